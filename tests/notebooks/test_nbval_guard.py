"""nbval really guards the committed outputs: a changed data value in a stored output fails it,
while an untouched copy of the same notebook passes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT

SANITIZE = PROJECT_ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOK = NOTEBOOKS_DIR / "01_dataset_and_quality.ipynb"


def bump_first_number_in_result_line(notebook: dict) -> str:
    """Change the first number printed on the notebook's RESULT line; return the line as changed."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", []))
            if "RESULT:" in text:
                changed = re.sub(r"RESULT: (\D*)(\d+)", lambda m: f"RESULT: {m[1]}{int(m[2]) + 1}", text, count=1)
                assert changed != text
                output["text"] = changed.splitlines(True)
                return changed
    raise AssertionError("no RESULT line in the stored outputs")


def test_a_changed_data_value_makes_nbval_fail(tmp_path: Path):
    pristine = tmp_path / "pristine.ipynb"
    mutated = tmp_path / "mutated.ipynb"
    pristine.write_text(NOTEBOOK.read_text())
    notebook = json.loads(NOTEBOOK.read_text())
    bump_first_number_in_result_line(notebook)
    mutated.write_text(json.dumps(notebook))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # this folder is the rootdir, not the project

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "-q", "-rf", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(pristine), str(mutated)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 1, result.stdout[-3000:]
    assert re.search(r"\b1 failed\b", summary), summary
    failures = result.stdout.split("short test summary")[-1]
    assert "mutated.ipynb::" in failures and "pristine.ipynb::" not in failures, failures
