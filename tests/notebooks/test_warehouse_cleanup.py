"""Notebooks 06 and 08 with cleanup=True remove exactly what they created: 08 its staged bulk file (the
warehouse is 06's), 06 its delivery streams, warehouse, staging bucket and roles, and its record, so a
later `require("06")` builds again. Notebook 02's stream stays (it is 02's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import config, resources, warehouse, workbook

PREFIX = "whclean"


@pytest.mark.localcloud
def test_warehouse_notebooks_clean_up_what_they_created(tmp_path: Path):
    for number, parameters in (("08", {"nrows": 700, "report_dir": str(tmp_path / "report")}), ("06", {"nrows": 700})):
        notebook = workbook.notebooks([number])[0]
        run = workbook.execute(notebook, tmp_path / notebook.name, {"prefix": PREFIX, "cleanup": True, **parameters},
                               cell_timeout=300)
        assert run.ok and run.results, f"{notebook.name} failed at {run.error} (executed copy: {run.output})"

    previous = config._current
    try:
        config.configure(prefix=PREFIX)
        names = resources.names()
        assert warehouse.remaining(names) == {"delivery_streams": [], "warehouse": [], "buckets": [], "roles": []}
        assert not workbook.state_path("06", "local", PREFIX).exists(), "06 forgot its record"
        assert not workbook.state_path("08", "local", PREFIX).exists(), "08 forgot its record"
        config.client("kinesis").describe_stream_summary(StreamName=names.stream)  # 02's stream is 02's
    finally:
        config._current = previous
