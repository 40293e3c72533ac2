"""The shipped synthetic medical data: reproducible, within its public bounds, and shaped like
the model that generated it (differential checks against statsmodels on the pooled table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.duration.hazard_regression import PHReg

from tessera.data import medical
from tessera.data.medical import BOUNDS, PROVIDERS, ROWS, SEED

SAMPLE = Path(medical.__file__).resolve().parent / "sample"


@pytest.fixture(scope="module")
def shipped() -> dict[str, pd.DataFrame]:
    return {p: medical.load(p) for p in PROVIDERS}


@pytest.fixture(scope="module")
def pooled(shipped: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([df.assign(site=p) for p, df in shipped.items()], ignore_index=True)


# --- reproducibility -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_regenerating_gives_the_shipped_csv_byte_for_byte(provider: str) -> None:
    fresh = medical.to_csv(medical.generate(provider, ROWS[provider], SEED))
    assert fresh == medical.sample_path(provider).read_bytes(), (
        "regenerate with `python -m tessera.data.medical --write` and commit"
    )


def test_readme_is_regenerated_from_the_metadata() -> None:
    assert (SAMPLE / "README.md").read_text(encoding="utf-8") == medical.readme()


def test_write_produces_exactly_the_shipped_files(tmp_path: Path) -> None:
    sizes = medical.write(tmp_path)
    assert sorted(sizes) == sorted(p.name for p in SAMPLE.iterdir() if p.is_file())
    for name in sizes:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_shipped_data_is_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLE.iterdir())
    assert total < 400_000


def test_same_arguments_same_table_other_arguments_other_tables() -> None:
    a = medical.generate("hospital-a", 300, 7)
    pd.testing.assert_frame_equal(a, medical.generate("hospital-a", 300, 7))
    assert not a.equals(medical.generate("hospital-a", 300, 8))
    assert not a.equals(medical.generate("hospital-b", 300, 7))


def test_the_provider_stream_does_not_depend_on_python_hash() -> None:
    # a fixed draw: hash() of a str changes with PYTHONHASHSEED, SHA-256 does not
    draw = medical.provider_rng("hospital-a", 1).integers(0, 1 << 32, 3).tolist()
    assert draw == medical.provider_rng("hospital-a", 1).integers(0, 1 << 32, 3).tolist()
    assert draw != medical.provider_rng("hospital-b", 1).integers(0, 1 << 32, 3).tolist()


@pytest.mark.parametrize(("rows", "seed"), [(0, 1), (-5, 1), (10, -1)])
def test_generate_rejects_bad_arguments(rows: int, seed: int) -> None:
    with pytest.raises(ValueError):
        medical.generate("hospital-a", rows, seed)


# --- loading and metadata --------------------------------------------------------------------


def test_load_dtypes_and_columns(shipped: dict[str, pd.DataFrame]) -> None:
    for provider, df in shipped.items():
        assert list(df.columns) == list(BOUNDS), provider
        assert len(df) == ROWS[provider]
        for col in medical.INT_COLUMNS:
            assert df[col].dtype == np.int64, col
        for col in medical.FLOAT_COLUMNS:
            assert df[col].dtype == np.float64, col
        for col in medical.STR_COLUMNS:
            assert pd.api.types.is_string_dtype(df[col].dtype), col
            assert all(isinstance(v, str) for v in df[col]), col


@pytest.mark.parametrize("provider", PROVIDERS)
def test_load_equals_generate(provider: str, shipped: dict[str, pd.DataFrame]) -> None:
    pd.testing.assert_frame_equal(
        shipped[provider], medical.generate(provider, ROWS[provider], SEED)
    )


def test_unknown_provider_has_no_sample() -> None:
    with pytest.raises(ValueError, match="no sample"):
        medical.load("hospital-z")
    with pytest.raises(ValueError, match="no sample"):
        medical.sample_path("../hospital-a")


def test_sample_path_is_the_shipped_file() -> None:
    path = medical.sample_path("lab-d")
    assert path.is_file() and path.resolve() == (SAMPLE / "lab-d.csv").resolve()


def test_provider_sizes_are_unequal_and_modest() -> None:
    assert set(ROWS) == set(PROVIDERS)
    assert len(set(ROWS.values())) == len(PROVIDERS)
    assert all(600 <= n <= 1_500 for n in ROWS.values())


def test_bounds_for_network_types() -> None:
    spec = medical.bounds_for_network()
    assert list(spec) == [medical.TABLE]
    cols = spec[medical.TABLE]
    assert list(cols) == list(BOUNDS)
    for col in medical.INT_COLUMNS:
        lo, hi = cols[col]
        assert type(lo) is int and type(hi) is int and lo < hi, col
    for col in medical.FLOAT_COLUMNS:
        lo, hi = cols[col]
        assert type(lo) is float and type(hi) is float and lo < hi, col
    assert cols["sex"] == ["F", "M"]
    assert cols["ward"] == list(medical.WARDS)


# --- bounds ----------------------------------------------------------------------------------


def _assert_within_bounds(df: pd.DataFrame) -> None:
    for col, spec in BOUNDS.items():
        if col in medical.STR_COLUMNS:
            assert set(df[col]) <= set(spec), col
        else:
            lo, hi = spec
            assert df[col].between(lo, hi).all(), (col, df[col].min(), df[col].max())
    for col in ("bmi", "hba1c", "glucose", "cholesterol"):  # one decimal
        assert np.allclose(df[col], df[col].round(1)), col


def test_shipped_values_within_bounds(pooled: pd.DataFrame) -> None:
    _assert_within_bounds(pooled)
    for col in ("smoker", "diabetes", "event"):
        assert set(pooled[col]) == {0, 1}, col
    assert set(pooled.sex) == {"F", "M"}
    assert set(pooled.ward) == set(medical.WARDS)


@pytest.mark.parametrize("provider", [*PROVIDERS, "another-site"])
def test_large_draws_stay_within_bounds(provider: str) -> None:
    _assert_within_bounds(medical.generate(provider, 20_000, 3))


def test_age_does_not_pile_up_at_the_bounds(pooled: pd.DataFrame) -> None:
    # ages are drawn from a truncated normal, not clipped
    assert (pooled.age == 18).mean() < 0.005 and (pooled.age == 95).mean() < 0.005


# --- the shape of the data -------------------------------------------------------------------


def test_diabetes_follows_hba1c(pooled: pd.DataFrame) -> None:
    normal = pooled[pooled.hba1c < 5.7].diabetes.mean()
    prediabetic = pooled[(pooled.hba1c >= 5.7) & (pooled.hba1c < 6.5)].diabetes.mean()
    diabetic = pooled[pooled.hba1c >= 6.5].diabetes.mean()
    assert normal < 0.1 < prediabetic < 0.5 < diabetic


def test_correlations(pooled: pd.DataFrame) -> None:
    corr = pooled[["age", "bmi", "sbp", "glucose", "hba1c", "cholesterol"]].corr()
    assert 0.6 < corr.loc["glucose", "hba1c"] < 0.95
    assert corr.loc["age", "sbp"] > 0.3
    assert corr.loc["bmi", "hba1c"] > 0.2
    assert corr.loc["bmi", "sbp"] > 0.2


def test_events_happen_earlier_than_censoring_and_more_with_age(pooled: pd.DataFrame) -> None:
    for smoker in (0, 1):
        group = pooled[pooled.smoker == smoker]
        by_event = group.groupby("event").followup_days.mean()
        assert by_event[1] < 0.7 * by_event[0], smoker
    rate = pooled.groupby(pd.qcut(pooled.age, 4), observed=True).event.mean().to_numpy()
    assert np.all(np.diff(rate) > 0), rate
    censored = pooled[pooled.event == 0].followup_days
    assert (censored == medical.FOLLOWUP_MAX).mean() > 0.6  # mostly administrative


def test_case_mix_differs_by_site(shipped: dict[str, pd.DataFrame]) -> None:
    top_ward = {p: df.ward.value_counts().idxmax() for p, df in shipped.items()}
    assert top_ward == {
        "hospital-a": "cardiology",
        "hospital-b": "oncology",
        "clinic-c": "general",
        "lab-d": "endocrinology",
    }
    assert "icu" not in set(shipped["clinic-c"].ward)
    mean_age = {p: df.age.mean() for p, df in shipped.items()}
    assert min(mean_age, key=lambda p: mean_age[p]) == "clinic-c"
    diabetes = {p: df.diabetes.mean() for p, df in shipped.items()}
    assert max(diabetes, key=lambda p: diabetes[p]) == "lab-d"
    events = {p: df.event.mean() for p, df in shipped.items()}
    assert min(events, key=lambda p: events[p]) == "clinic-c"


def test_logistic_fit_recovers_the_diabetes_model(pooled: pd.DataFrame) -> None:
    x = pooled[list(medical.DIABETES_CENTRE)].astype(float)
    x = x - pd.Series(medical.DIABETES_CENTRE)
    fit = sm.Logit(pooled.diabetes, sm.add_constant(x)).fit(disp=0)
    truth = {"const": medical.DIABETES_COEF["intercept"], **medical.DIABETES_COEF}
    for name in fit.params.index:
        assert abs(fit.params[name] - truth[name]) < 4 * fit.bse[name], name


def test_cox_fit_recovers_the_hazard_ratios(pooled: pd.DataFrame) -> None:
    z = pooled[list(medical.HAZARD_COEF)].astype(float)
    for ward in medical.WARDS[1:]:
        z[f"ward_{ward}"] = (pooled.ward == ward).astype(float)
    for site in PROVIDERS[1:]:
        z[f"site_{site}"] = (pooled.site == site).astype(float)
    fit = PHReg(pooled.followup_days.astype(float), z, status=pooled.event.to_numpy()).fit()
    params = pd.Series(fit.params, index=z.columns)
    bse = pd.Series(fit.bse, index=z.columns)
    for name, beta in medical.HAZARD_COEF.items():
        assert abs(params[name] - beta) < 4 * bse[name], (name, params[name], beta)
