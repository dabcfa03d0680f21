"""moto is reached through one facade (localcloud/motoapi), which refuses a moto it was not built for."""

from __future__ import annotations

import ast
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
