"""One `setup()` call at the top of every notebook, so its outputs are the same on every run.

nbval compares the committed outputs with a fresh run: seeds, pandas display options and the
matplotlib style must not depend on the machine or on what ran before.
"""

from __future__ import annotations

import os
import random

import matplotlib
import numpy as np
import pandas as pd

SEED = 20101201  # the day the dataset starts

PANDAS_OPTIONS: dict[str, object] = {
    "display.max_columns": 20,
    "display.max_colwidth": 90,
    "display.width": 160,
    "display.max_rows": 30,
    "display.precision": 2,
}

MATPLOTLIB_RC: dict[str, object] = {
    "figure.figsize": (9.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titleweight": "bold",
    "font.size": 10,
    "svg.hashsalt": "retail-pipelines",  # stable ids inside SVG output
}


def setup(seed: int = SEED) -> None:
    """Fix seeds, pandas display options and the matplotlib style for stable, readable output."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    for option, value in PANDAS_OPTIONS.items():
        pd.set_option(option, value)
    matplotlib.rcdefaults()
    matplotlib.rcParams.update(MATPLOTLIB_RC)
