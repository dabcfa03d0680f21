"""`python -m localcloud up|down|status|reset [--port N]`: the local cloud's lifecycle.

`up` prints the endpoint URL as its last line; `status` prints it or exits 1; `down` stops the
process and every worker it started, keeping its state for the next `up` (`down --wipe` or `reset`
forgets everything: an empty AWS account next time).
"""

from __future__ import annotations

import argparse
import sys
import time

from localcloud.lifecycle import DEFAULT_PORT, LocalCloudError, down, logfile, status, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "reset"))
    parser.add_argument("--wipe", action="store_true", help="down: also delete the saved state")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    args = parser.parse_args(argv)

    if args.command == "up":
        started = time.monotonic()
        already = status(args.port)
        try:
            endpoint = up(args.port)
        except LocalCloudError as error:
            print(f"localcloud: {error}", file=sys.stderr)
            return 2
        if already is None:
            print(f"localcloud: started in {time.monotonic() - started:.1f} s; log: {logfile(args.port)}",
                  file=sys.stderr)
        else:
            print(f"localcloud: already running (pid {already.pid})", file=sys.stderr)
        print(endpoint)
        return 0
    if args.command in ("down", "reset"):
        wipe = args.wipe or args.command == "reset"
        stopped = down(args.port, wipe=wipe)
        print(f"localcloud: {'stopped' if stopped else 'was not running'} on port {args.port}"
              + ("; state wiped" if wipe else "; state kept for the next up"))
        return 0
    running = status(args.port)
    if running is None:
        print(f"localcloud: not running on port {args.port}", file=sys.stderr)
        return 1
    print(f"localcloud: running, pid {running.pid}, executors: {', '.join(running.executors) or 'none'}",
          file=sys.stderr)
    print(running.endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
