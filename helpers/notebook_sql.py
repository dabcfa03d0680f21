"""The SQL a notebook defines, read from the notebook itself: the notebook stays its one source.

Notebook 06 writes its DDL and the star schema's `INSERT ... SELECT` in its cells, notebook 08 the
SQL of every business question. Tests, benchmarks and notebook 08's own reload run exactly those
statements by reading them here. A notebook's SQL is every top-level assignment of a constant, in
upper case, in a code cell:

    RAW_DDL = \"\"\"CREATE TABLE ...\"\"\"            -> named("06")["RAW_DDL"]
    STAR_BUILD = ("DELETE ...", "INSERT ...")    -> a tuple of statements
    QUESTIONS["sales_by_hour"] = \"\"\"SELECT ...\"\"\" -> named("08")["QUESTIONS"]["sales_by_hour"]
"""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from helpers.paths import NOTEBOOKS_DIR


def notebook_path(number: str) -> Path:
    found = sorted(NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"no single notebook numbered {number} in {NOTEBOOKS_DIR}")
    return found[0]


def named(number: str) -> dict[str, Any]:
    """Upper-case constants assigned in the code cells of notebook `number` ("06"), by name."""
    path = notebook_path(number)
    return _named(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _named(path: Path, _mtime: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            tree = ast.parse(text)
        except SyntaxError:  # a cell with IPython magics
            continue
        for node in tree.body:
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                found[target.id] = value
            elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                  and target.value.id.isupper() and isinstance(target.slice, ast.Constant)):
                found.setdefault(target.value.id, {})[target.slice.value] = value
    return found
