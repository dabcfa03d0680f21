"""moto is reached through one facade (localcloud/motoapi), which refuses a moto it was not built for."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localcloud import motoapi
from localcloud.motoapi import patches

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_moto_is_the_one_the_facade_was_built_for():
    assert motoapi.problems(everything=True) == []
    motoapi.check()


def test_another_moto_release_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(motoapi, "installed_version", lambda: "5.3.0")
    found = motoapi.problems()
    assert len(found) == 1 and "moto 5.3.0 is installed" in found[0] and "5.2.6" in found[0]
    with pytest.raises(motoapi.MotoVersionError, match="cannot start on this moto"):
        motoapi.check()


def test_every_patch_target_exists_with_the_parameters_its_patch_was_written_for():
    for key, target in {**motoapi.TARGETS, **patches.TARGETS}.items():
        _, current = target.resolve()
        if getattr(current, "__localcloud_patch__", False):
            continue  # replaced in this process already (after the same check)
        assert motoapi.parameters_of(current)[: len(target.parameters)] == target.parameters, key


def test_a_target_that_changed_shape_is_refused_before_anything_is_replaced():
    target = motoapi.Target("moto.kinesis.models", "Shard", "put_record", ("self", "data"))
    _, before = target.resolve()
    with pytest.raises(motoapi.MotoVersionError, match="was written for"):
        motoapi.replace(target, lambda original: original)
    assert target.resolve()[1] is before


def test_a_moved_target_is_reported(monkeypatch):
    monkeypatch.setitem(motoapi.TARGETS, "gone", motoapi.Target("moto.kinesis.models", "Shard", "no_such", ()))
    assert any("patch gone: moto no longer has" in problem for problem in motoapi.problems(everything=True))


def test_a_moved_export_fails_loudly_where_it_is_used(monkeypatch):
    monkeypatch.setitem(motoapi.EXPORTS, "gone_backends", "moto.kinesis.models:no_such_backends")
    with pytest.raises(motoapi.MotoVersionError, match="has no moto.kinesis.models:no_such_backends"):
        motoapi.gone_backends  # noqa: B018


def test_replace_returns_an_undo_that_restores_the_original():
    holder, original = motoapi.TARGETS["lambda.create_event_source_mapping"].resolve()
    undo = motoapi.replace("lambda.create_event_source_mapping", lambda wrapped: lambda self, spec: wrapped(self, spec))
    assert holder.create_event_source_mapping is not original
    undo()
    assert holder.create_event_source_mapping is original


def test_unknown_names_are_refused():
    with pytest.raises(AttributeError, match="add it to EXPORTS"):
        motoapi.no_such_name  # noqa: B018


def test_kinesis_record_accessors_read_both_shapes():
    class New:
        data, created_at = b"\x00hi", __import__("datetime").datetime(2026, 1, 1)

    class Old:
        data, created_at = "AGhp", 1767225600.0

    for record in (New, Old):
        assert motoapi.kinesis_record_bytes(record) == b"\x00hi"
        assert motoapi.kinesis_record_base64(record) == "AGhp"
        assert motoapi.kinesis_record_arrival(record) == 1767225600.0


def test_nothing_outside_the_facade_imports_moto():
    offenders = []
    for path in [*ROOT.glob("localcloud/**/*.py"), *ROOT.glob("helpers/**/*.py"), *ROOT.glob("benchmarks/*.py"),
                 *ROOT.glob("lambdas/**/*.py")]:
        if "motoapi" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if any(name == "moto" or name.startswith("moto.") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# --- the clock: every read of moto's is routed to the journal's clock (motoapi/clock.py) -------------

def _bindings(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """Module-level names bound to the clock's modules and objects ("datetime module", "datetime class",
    "date class", "time module", "time function"), and the names a function imports for itself."""
    found, local = {}, set()
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, ast.Import):
            pairs = [(f"{alias.name} module", alias.asname or alias.name) for alias in node.names
                     if alias.name in ("datetime", "time")]
        elif isinstance(node, ast.ImportFrom) and node.module in ("datetime", "time"):
            kind = "class" if node.module == "datetime" else "function"
            pairs = [(f"{alias.name} {kind}", alias.asname or alias.name)
                     for alias in node.names if alias.name in ("datetime", "date", "time")]
        for holds, name in pairs:
            if node in tree.body:
                found[name] = holds
            else:
                local.add(name)
    return found, local


def _clock_reads(path: Path) -> list[tuple[str, str, int]]:
    """(global name, what it holds, line) of every clock read in a moto source file."""
    tree = ast.parse(path.read_text())
    bound, local = _bindings(tree)
    reads = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and bound.get(func.id) == "time function":
            reads.append((func.id, "time function", node.lineno))
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value
        if func.attr in ("now", "utcnow", "today") and isinstance(owner, ast.Attribute) \
                and owner.attr in ("datetime", "date") and isinstance(owner.value, ast.Name) \
                and owner.value.id in bound:
            reads.append((owner.value.id, bound[owner.value.id], node.lineno))
        elif isinstance(owner, ast.Name) and (owner.id in bound or owner.id in local) and (
                (func.attr in ("now", "utcnow", "today") and bound.get(owner.id, "").endswith("class"))
                or (func.attr in ("time", "time_ns", "monotonic") and owner.id == "time")):
            reads.append((owner.id, bound.get(owner.id, "a function's own import"), node.lineno))
    return reads


def test_every_clock_read_of_the_services_used_goes_through_the_listed_globals():
    """A moto upgrade that reads the clock somewhere new fails here, naming the place: a replayed
    request would read the live clock there (list it in CLOCK_READS, if the stand-in covers it)."""
    root = Path(importlib.util.find_spec("moto").origin).parent
    listed = {(site.module, site.name): site.holds for site in motoapi.CLOCK_READS}
    covered = {"datetime class": {"now", "utcnow", "today"}, "datetime module": {"now", "utcnow", "today"},
               "time module": {"time"}, "time function": {"time"}}
    unlisted = []
    for service in motoapi.CLOCK_SERVICES:
        for path in sorted((root / service).rglob("*.py")):
            if "tests" in path.parts or (service == "core" and path.name == "utils.py"):
                continue  # core/utils.py defines utcnow itself: TARGETS["clock.utcnow"]
            module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
            source = path.read_text()
            for name, holds, line in _clock_reads(path):
                call = source.splitlines()[line - 1].strip()
                if listed.get((module, name)) != holds or not any(f".{attr}(" in call or f"{name}(" in call
                                                                  for attr in covered.get(holds, ())):
                    unlisted.append(f"{module}:{line} {call}")
    assert unlisted == []
    assert len(listed) == len(motoapi.CLOCK_READS) >= 13  # the reads grep finds in moto 5.2.6


def test_a_listed_global_that_moved_is_reported(monkeypatch):
    monkeypatch.setattr(motoapi, "CLOCK_READS", (motoapi.ClockRead("moto.s3.models", "datetime", "time module"),))
    assert any("clock read moto.s3.models:datetime" in found for found in motoapi.problems(everything=True))


def test_moto_reads_the_given_clock_where_it_reads_the_time_and_the_undo_restores_it():
    from localcloud.motoapi import clock

    kinesis = importlib.import_module("moto.kinesis.models")
    core = importlib.import_module("moto.core.utils")
    s3 = importlib.import_module("moto.s3.models")
    apigateway_v2 = importlib.import_module("moto.apigatewayv2.models")
    reads: list[str] = []
    moment = 1_796_000_000_123_456  # microseconds since the epoch

    def read(kind: str) -> int:
        reads.append(kind)
        return moment

    originals = (kinesis.utcnow, core.utcnow, s3.datetime, apigateway_v2.datetime)
    undo = clock.install(read)
    try:
        utc = datetime.fromtimestamp(moment / 1e6, timezone.utc)
        assert kinesis.utcnow() == utc.replace(tzinfo=None)  # a Kinesis record's arrival
        assert core.unix_time_millis() == 1_796_000_000_123.456  # through core.utils' own utcnow
        assert core.iso_8601_datetime_with_nanoseconds() == utc.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        assert s3.datetime.datetime.now(tz=timezone.utc) == utc  # a bucket's CreationDate
        assert apigateway_v2.datetime.now() == utc.astimezone().replace(tzinfo=None)  # local, naive
        assert reads == ["u", "u", "u", "n", "n"]
        # the stand-ins are the real thing otherwise: moto's state only holds real datetimes
        made = apigateway_v2.datetime(2026, 1, 2)
        assert type(made) is datetime and isinstance(made, apigateway_v2.datetime)
        assert apigateway_v2.datetime.strptime("2026", "%Y") == datetime(2026, 1, 1)
        assert s3.datetime.timedelta is timedelta and s3.datetime.datetime.min == datetime.min
    finally:
        undo()
    assert (kinesis.utcnow, core.utcnow, s3.datetime, apigateway_v2.datetime) == originals


def test_a_module_moto_imports_later_reads_the_given_clock_too():
    """moto imports a service's models on its first call (API Gateway's take seconds): a listed module
    is patched as it is imported, and a module binding `utcnow` then binds the replacement."""
    script = """
import sys
from localcloud.motoapi import clock
undo = clock.install(lambda kind: 1_000_000 * 86_400)
assert "moto.redshiftdata.models" not in sys.modules and "moto.sts.models" not in sys.modules
import moto.redshiftdata.models as redshiftdata, moto.sts.models as sts
print(redshiftdata.datetime.now().astimezone().date(), sts.utcnow())
undo()
print(type(redshiftdata.datetime).__name__, sts.utcnow.__module__)
"""
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split("\n")[:2] == ["1970-01-02 1970-01-02 00:00:00", "type moto.core.utils"]
