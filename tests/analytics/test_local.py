"""Provider-side evaluation with DuckDB against pandas on the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.analytics.moments import Count, Variance
from tessera.analytics.terms import Plan
from tessera.errors import ConfigError, PolicyViolation


def frame(seed: int, n: int) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": g.integers(-5, 130, n),
            "bmi": g.normal(27.0, 9.0, n),
            "smoker": g.integers(0, 2, n),
        }
    )


BOUNDS = {"age": ColumnBounds(0, 120, 0), "bmi": ColumnBounds(10.0, 60.0, 8)}


def plan() -> Plan:
    terms = {}
    for s in (Count(), Variance("age"), Variance("bmi")):
        for t in s.terms(BOUNDS):
            terms[t.name] = t
    return Plan(tuple(terms.values()))


@pytest.mark.parametrize("source", ["pandas", "polars", "csv", "parquet"])
def test_terms_match_pandas(source: str, tmp_path: Path) -> None:
    df = frame(1, 500)
    src: object = df
    if source == "polars":
        src = pl.from_pandas(df)
    elif source == "csv":
        src = tmp_path / "t.csv"
        df.to_csv(src, index=False)
    elif source == "parquet":
        src = tmp_path / "t.parquet"
        df.to_parquet(src)
    db = LocalDatabase({"patients": src})
    res = db.evaluate(plan(), "patients", BOUNDS, where="smoker = 1")
    sub = df[df.smoker == 1]
    age = sub.age.clip(0, 120)
    bmi = (sub.bmi.clip(10.0, 60.0) * 256).round().astype(int)
    want = {
        "n": len(sub),
        "n[age]": len(sub),
        "sum[age]": int(age.sum()),
        "prod[age,age]": int((age * age).sum()),
        "n[bmi]": len(sub),
        "sum[bmi]": int(bmi.sum()),
        "prod[bmi,bmi]": int((bmi * bmi).sum()),
    }
    got = dict(zip([t.name for t in plan().terms], res.values, strict=True))
    assert got == want
    assert res.rows == len(sub)
    assert res.clipped["age"] == int(((sub.age < 0) | (sub.age > 120)).sum())
    assert res.clipped["bmi"] == int(((sub.bmi < 10) | (sub.bmi > 60)).sum())


def test_terms_stay_within_their_slot_bounds() -> None:
    df = frame(2, 300)
    db = LocalDatabase({"t": df})
    p = plan()
    res = db.evaluate(p, "t", BOUNDS)
    spec = p.vector_spec(max_rows=300)
    for v, slot in zip(res.values, spec.slots, strict=True):
        assert slot.lo <= v <= slot.hi


def test_empty_selection_gives_zeros() -> None:
    db = LocalDatabase({"t": frame(3, 50)})
    res = db.evaluate(plan(), "t", BOUNDS, where="age > 1000")
    assert res.rows == 0 and set(res.values) == {0}


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        LocalDatabase({"t": tmp_path / "missing.csv"})
    with pytest.raises(ConfigError, match="unsupported file type"):
        (tmp_path / "x.txt").write_text("a\n1\n")
        LocalDatabase({"t": tmp_path / "x.txt"})
    with pytest.raises(ConfigError, match="identifier"):
        LocalDatabase({"bad name": frame(0, 5)})
    db = LocalDatabase({"t": frame(0, 5)})
    with pytest.raises(PolicyViolation, match="no table"):
        db.evaluate(plan(), "u", BOUNDS)
    with pytest.raises(PolicyViolation, match="no column"):
        db.evaluate(plan(), "t", {"weight": ColumnBounds(0, 1)})
