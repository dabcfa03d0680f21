"""`python -m helpers deploy PIPELINE`: build one pipeline (and what it builds on) and say where it is.

For people who want to send data themselves without opening a notebook: the pipeline's notebook runs
headless with build_only=True when its resources are not there yet (`workbook.require`, the same path
the notebooks and benchmarks use), then its names, ids and URLs are printed as one JSON object on the
last line. On the local cloud it starts the cloud first and leaves it running.

    python -m helpers deploy ingestion           # {"batch_url": ..., "row_url": ..., "stream": ...}
    python -m helpers deploy query --shards 2
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# pipeline -> the notebook that builds it
PIPELINES: dict[str, str] = {
    "roles": "00",
    "ingestion": "02",
    "lake": "03",
    "serving": "04",
    "query": "05",
    "warehouse": "06",
    "batch": "07",
    "telemetry": "09",
    "catalog": "10",
}


def urls(built: dict[str, Any]) -> dict[str, str]:
    """Where the REST APIs a record names answer (the record keeps ids; URLs depend on the target)."""
    from helpers import apis

    found = {}
    if "ingest_api_id" in built:
        base = apis.invoke_url(built["ingest_api_id"], built.get("stage", "v1"))
        found |= {"batch_url": f"{base}/transactions", "row_url": f"{base}/transaction"}
    if "query_api_id" in built:
        found["query_url"] = apis.invoke_url(built["query_api_id"], built.get("query_stage", built.get("stage", "v1")))
    return found


def deploy(pipeline: str, **parameters: Any) -> dict[str, Any]:
    from helpers import cloud, workbook

    cloud.ensure_running()
    built = workbook.require(PIPELINES[pipeline], **parameters)
    return {**built, **urls(built)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("deploy", help="build a pipeline if needed and print where it is (JSON)")
    command.add_argument("pipeline", choices=sorted(PIPELINES))
    command.add_argument("--shards", type=int, help="Kinesis shards (pipelines built on notebook 02)")
    args = parser.parse_args(argv)
    parameters = {"shards": args.shards} if args.shards is not None and PIPELINES[args.pipeline] in ("02", "03", "04", "05") else {}
    try:
        where = deploy(args.pipeline, **parameters)
    except RuntimeError as error:
        print(f"deploy {args.pipeline}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(where, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
