"""Where the project's files live, so notebooks in any folder find them."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]
DATA_DIR: Path = PROJECT_ROOT / "data"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
LAMBDAS_DIR: Path = PROJECT_ROOT / "lambdas"
BUILD_DIR: Path = PROJECT_ROOT / "build"
