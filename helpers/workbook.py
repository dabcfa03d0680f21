"""Run the numbered notebooks headless with papermill: the main job, the tests and the refresh.

`python -m helpers.workbook run` executes every notebook in order against the local cloud into
`build/notebooks/` and writes `build/summary.md`. `python -m helpers.workbook refresh` re-executes
notebooks into a temp file and, only when they succeed, replaces the committed copies with their
papermill metadata stripped (nbstripout --keep-output), so nbval compares against a clean run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Iterable, Iterator

from helpers.paths import BUILD_DIR, NOTEBOOKS_DIR

CELL_TIMEOUT_S = 600
RESULT_MARK = "RESULT:"
# papermill writes timings and paths into these; nbval must not see them in committed notebooks.
PAPERMILL_KEYS = "metadata.papermill cell.metadata.papermill cell.metadata.execution"


@dataclass(frozen=True)
class NotebookRun:
    notebook: Path
    output: Path
    seconds: float
    error: str | None
    results: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.error is None


def notebooks(only: Iterable[str] = ()) -> list[Path]:
    """The numbered notebooks in order; `only` filters by number or name prefix (e.g. "01")."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    wanted = tuple(only)
    return [path for path in found if not wanted or path.name.startswith(wanted)]


def execute(notebook: Path, output: Path, parameters: dict[str, Any] | None = None,
            cell_timeout: int = CELL_TIMEOUT_S) -> NotebookRun:
    """Execute one notebook with papermill (kernel `python3`, cwd = its folder); never raises on cell errors."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    error: str | None = None
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters or {}, kernel_name="python3",
            cwd=str(notebook.parent), execution_timeout=cell_timeout, progress_bar=False,
        )
    except papermill.PapermillExecutionError as failure:
        if failure.ename != "BuildOnly":  # a build_only=True run ends early on purpose
            error = f"cell {failure.exec_count}: {failure.ename}: {failure.evalue}"
    return NotebookRun(notebook, output, time.monotonic() - started, error, _result_lines(output))


# ---------------------------------------------------------------------------------------------------
# The notebooks are the build: a later notebook requires an earlier one's resources


# What each notebook builds on (require() makes sure of these first, in order).
DEPENDS: dict[str, tuple[str, ...]] = {"00": (), "02": ("00",), "03": ("02",), "04": ("03",), "05": ("04",),
                                      "06": ("02",), "07": ("06",), "08": ("06",), "09": (), "10": ("03",)}
STATE_DIR = BUILD_DIR / "state"
# Bumped when what notebooks record changes shape (2: notebook 02 records its record-contract layer):
# a record of another format is rebuilt rather than trusted.
RECORD_FORMAT = 2


class BuildOnly(Exception):
    """Raised by `stop_after_build()`: a notebook run with build_only=True ends here, on purpose."""


def state_folder(target: str, prefix: str) -> Path:
    """Records (and the headless runs that made them) of one cloud and prefix: each local cloud (by its
    address) or AWS region has its own, so two clouds at once (a test session and `make run`) never
    overwrite each other's records or runs."""
    from helpers import config

    settings = config.settings()
    place = (urlsplit(settings.endpoint_url or "").netloc.replace(":", "-") or "default") if target == "local" \
        else settings.region
    return STATE_DIR / target / place / prefix


def state_path(number: str, target: str, prefix: str) -> Path:
    return state_folder(target, prefix) / f"{number}.json"


Probe = tuple[str, str, dict[str, Any]]


def record(number: str, *, probe: Probe | list[Probe], parameters: dict[str, Any] | None = None,
           **built: Any) -> dict[str, Any]:
    """Called by notebook `number` in its last build cell: what it built (`built`: names, ids), the
    parameters that shaped it, and `probe`, read calls (service, operation, arguments) that fail when
    its key resources are gone. `require` trusts the record only while every probe answers, in the same
    cloud (a local cloud's endpoint changes from one test session to the next)."""
    from helpers import config

    settings = config.settings()
    probes = [list(probe)] if isinstance(probe, tuple) else [list(p) for p in probe]
    state = {"notebook": number, "format": RECORD_FORMAT, "parameters": parameters or {}, "probes": probes,
             "endpoint": settings.endpoint_url if settings.is_local else settings.region, "built": built}
    path = state_path(number, settings.target, settings.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=1, sort_keys=True, default=str))
    return built


def forget(number: str) -> None:
    """Called by a notebook's Cleanup: its resources are gone, so its record goes too."""
    from helpers import config

    settings = config.settings()
    state_path(number, settings.target, settings.prefix).unlink(missing_ok=True)


def stop_after_build() -> None:
    """End a build_only run here (require() expects it); the rest of the notebook sends and checks."""
    raise BuildOnly("build_only=True: the resources are built; the rest of this notebook sends data and checks")


def _still_there(number: str, parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The record of notebook `number`, if it was made with these parameters and its probe answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    from helpers import config

    settings = config.settings()
    path = state_path(number, settings.target, settings.prefix)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if state.get("format") != RECORD_FORMAT:
        return None
    if any(state["parameters"].get(key) != value for key, value in parameters.items()):
        return None
    if state.get("endpoint") != (settings.endpoint_url if settings.is_local else settings.region):
        return None
    for service, operation, arguments in state.get("probes", []):
        try:
            getattr(config.client(service), operation)(**arguments)
        except (ClientError, BotoCoreError):
            return None
    return state["built"]


def _build(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Run a notebook headless in its own process, its output and log next to the record (the kernel's
    messages must not land in the output of the notebook that asked for it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "papermill", str(notebook), str(output), "-k", "python3", "--cwd",
               str(notebook.parent), "--no-progress-bar", "--execution-timeout", str(CELL_TIMEOUT_S)]
    for name, value in parameters.items():
        command += ["-y", json.dumps({name: value})]
    with output.with_suffix(".log").open("w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)


def require(number: str, **parameters: Any) -> dict[str, Any]:
    """What notebook `number` built (its record, merged with those of the notebooks it builds on), running
    it headless with build_only=True first when its resources are not there (or were built with other
    `parameters`, e.g. shards). Quick when they are: a read of each record and one probe call each.

    The earlier notebook is the one source of truth of its resources: nothing here creates anything."""
    from helpers import config

    settings = config.settings()
    built: dict[str, Any] = {}
    for dependency in DEPENDS.get(number, ()):
        built |= require(dependency, **{k: v for k, v in parameters.items() if dependency != "00"})
    mine = _still_there(number, parameters)
    if mine is None:
        notebook = notebooks([number])[0]
        output = state_folder(settings.target, settings.prefix) / notebook.name
        _build(notebook, output, {"target": settings.target, "region": settings.region, "prefix": settings.prefix,
                                  "allow_aws_create": settings.allow_aws_create, "build_only": True, **parameters})
        mine = _still_there(number, parameters)
        if mine is None:
            log = output.with_suffix(".log")
            errors = [line for line in log.read_text(errors="replace").splitlines()
                      if "Error" in line or "NotAllowed" in line] if log.exists() else []
            raise RuntimeError(f"{notebook.name} with build_only=True recorded nothing"
                               + (f" ({errors[-1].strip()})" if errors else "") + f": see {output} and {log}")
    return built | mine


def _result_lines(executed: Path) -> tuple[str, ...]:
    """Lines a notebook printed starting with RESULT: (its own one-line proof of what it built)."""
    if not executed.exists():
        return ()
    lines = []
    for cell in json.loads(executed.read_text()).get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            for line in (text if isinstance(text, list) else text.splitlines(True)):
                if line.startswith(RESULT_MARK):
                    lines.append(line[len(RESULT_MARK):].strip())
    return tuple(lines)


def write_summary(runs: list[NotebookRun], path: Path) -> str:
    total = sum(run.seconds for run in runs)
    lines = [
        "# Workbook run", "",
        f"{sum(run.ok for run in runs)} of {len(runs)} notebooks passed in {total:.1f} s.", "",
        "| notebook | status | seconds | result |", "| --- | --- | ---: | --- |",
    ]
    for run in runs:
        status = "ok" if run.ok else "FAILED"
        detail = "; ".join(run.results) if run.ok else (run.error or "").replace("|", "\\|")[:300]
        lines.append(f"| {run.notebook.stem} | {status} | {run.seconds:.1f} | {detail} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def strip_papermill_metadata(path: Path) -> None:
    """Outputs and execution counts stay (nbval skips cells without a count); papermill's timings go."""
    subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", "--extra-keys", PAPERMILL_KEYS, str(path)],
        check=True,
    )


def refresh(notebook: Path) -> NotebookRun:
    """Re-execute `notebook` and replace its committed outputs, only if every cell succeeded."""
    with tempfile.TemporaryDirectory() as scratch:
        run = execute(notebook, Path(scratch) / notebook.name)
        if run.ok:
            strip_papermill_metadata(run.output)
            shutil.copyfile(run.output, notebook)
    return run


@contextlib.contextmanager
def _cloud(keep: bool) -> Iterator[None]:
    """The local cloud for a run (none on target=aws); stopped afterwards if this run started it.

    A cloud this run starts begins empty (what an earlier run left is forgotten), so `make run` always
    builds the platform from nothing, as on a fresh account; one already running is used as it is."""
    from helpers import cloud

    local = os.environ.get("RETAIL_TARGET", "local") == "local"
    was_running = local and cloud.is_running()
    if local and not was_running:
        cloud.reset()
    if local:
        print(f"local cloud: {cloud.ensure_running()}")
    try:
        yield
    finally:
        if local and not was_running and not keep:
            cloud.stop()
            print("local cloud stopped (use --keep-cloud to keep it running for exploration)")


def _run(args: argparse.Namespace) -> int:
    if args.data:
        os.environ["RETAIL_DATA"] = str(Path(args.data).resolve())
    with _cloud(args.keep_cloud):
        runs = _run_notebooks(args)
    return 0 if runs and all(run.ok for run in runs) else 1


def _run_notebooks(args: argparse.Namespace) -> list[NotebookRun]:
    parameters = {name: _literal(value) for name, value in args.parameter or []}
    runs = []
    for notebook in notebooks(args.only):
        print(f"running {notebook.name} ...", flush=True)
        run = execute(notebook, args.out / "notebooks" / notebook.name, parameters)
        print(f"  {'ok' if run.ok else 'FAILED'} in {run.seconds:.1f} s" + (f": {run.error}" if run.error else ""))
        runs.append(run)
    print()
    print(write_summary(runs, args.out / "summary.md"))
    print(f"executed notebooks: {args.out / 'notebooks'}; summary: {args.out / 'summary.md'}")
    return runs


def _literal(text: str) -> Any:
    """`-p nrows 500` gives the int 500, `-p target aws` the string 'aws' (as papermill's -p does)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _refresh(args: argparse.Namespace) -> int:
    failed = 0
    with _cloud(keep=False):
        for notebook in notebooks(args.only):
            run = refresh(notebook)
            print(f"{notebook.name}: {'refreshed' if run.ok else 'FAILED, left unchanged: ' + str(run.error)} "
                  f"({run.seconds:.1f} s)")
            failed += not run.ok
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.workbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute every notebook into build/ and write a summary")
    run.add_argument("--only", nargs="*", default=(), help="notebook numbers or names, e.g. 00 01")
    run.add_argument("--data", help="CSV to use instead of data/sample.csv (e.g. the full real file)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="papermill parameter for every notebook (repeatable)")
    run.add_argument("--out", type=Path, default=BUILD_DIR)
    run.add_argument("--keep-cloud", action="store_true", help="leave the local cloud running afterwards")
    refresh_parser = commands.add_parser("refresh", help="re-execute notebooks and update their committed outputs")
    refresh_parser.add_argument("--only", nargs="*", default=())
    args = parser.parse_args(argv)
    return _run(args) if args.command == "run" else _refresh(args)


if __name__ == "__main__":
    sys.exit(main())
