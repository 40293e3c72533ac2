"""The rows both sides of ``benchmarks/peers.py`` compute over: Drynx's clinical table
(``drynx_headline.make_data``), one third per party, the same seeds on both sides."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drynx_headline import make_data

#: the mean and variance's column; the regression's outcome and its 10 features
COLUMN = "age"
Y = "sbp"
X = ("age", "bmi", "dbp", "cholesterol", "glucose", "hba1c", "heart_rate", "creatinine",
     "weight", "height")  # fmt: skip


def frame(rows: int, seed: int) -> pd.DataFrame:
    return make_data(rows, seed)


def columns(task: str, rows: int, seed: int) -> np.ndarray:
    """The party's rows as ``[1, age]`` (mean and variance) or ``[1, x…, y]`` (regression)."""
    df = frame(rows, seed)
    cols = [COLUMN] if task == "meanvar" else [*X, Y]
    return np.column_stack([np.ones(rows), *(df[c].to_numpy(dtype=float) for c in cols)])
