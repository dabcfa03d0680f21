"""The BI notebook's plumbing: run its questions timed, save charts, write the HTML report.

The questions' SQL lives in notebook 08 (`QUESTIONS["name"] = "..."`, one cell per question);
`questions()` reads it from there, so the benchmark and the tests run exactly the notebook's SQL.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from helpers import notebook_sql
from helpers.redshift_data import Warehouse, query


def questions() -> dict[str, str]:
    """Notebook 08's business questions: name -> SQL, in the notebook's order."""
    return dict(notebook_sql.named("08")["QUESTIONS"])


def run_questions(wh: Warehouse, sql_by_name: dict[str, str] | None = None,
                  only: Iterable[str] | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Every question (or `only` those): results by name, and seconds per query as a caller sees them."""
    sql_by_name = sql_by_name if sql_by_name is not None else questions()
    results, seconds = {}, {}
    for name in only or sql_by_name:
        started = time.perf_counter()
        results[name] = query(wh, sql_by_name[name])
        seconds[name] = time.perf_counter() - started
    return results, seconds


def save_figure(figure: Any, report_dir: Path, name: str) -> Path:
    """Save a matplotlib figure as `<report_dir>/<name>.png` (no timestamp in the file's metadata)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / f"{name}.png"
    figure.savefig(target, metadata={"Software": None})
    return target


def write_report(report_dir: Path, title: str, sections: Sequence[tuple[str, str, pd.DataFrame | None]],
                 intro: str = "") -> Path:
    """`<report_dir>/index.html`: per section a heading, its chart (`<name>.png`, linked next to the
    page) and optionally a small table, so people look rather than read."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}"
             "img{max-width:100%}table{border-collapse:collapse;font-size:0.85em}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>" if intro else ""]
    for heading, image, table in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><img src='{html.escape(image)}.png' alt='{html.escape(heading)}'>")
        if table is not None:
            parts.append(table.to_html(index=False, float_format=lambda x: f"{x:,.2f}", na_rep=""))
    parts.append("</body></html>")
    target = report_dir / "index.html"
    report_dir.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(parts), encoding="utf-8")
    return target
