"""Random reference/current tables with messy column types, for the differential test against Evidently.

Imports only NumPy and pandas, and builds the same values under pandas 2 (Evidently's environment,
`benchmarks/drift/differential.py`) and pandas 3 (driftloop's), so the figures Evidently gave can be
pinned in `tests/data/evidently_messy_tables.json` and checked in `make test` without Evidently.

Columns: `num` float; `count` int64 with many values (numeric); `level` int64 with few values
(categorical); `color` strings; `band` a category dtype with unused categories; `n_int`, `n_float`,
`n_flag` nullable Int64 / Float64 / boolean with missing values; `mixed` an object column of str and int.
Each column drifts or not at random; the reference has 300 to 3,000 rows (both sides of Evidently's
1,000-row switch of tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["num", "count", "level", "color", "band", "n_int", "n_float", "n_flag", "mixed"]
NULLABLE = ["n_int", "n_float", "n_flag"]
REFERENCE_ROWS = [300, 800, 1500, 3000]


def messy_pair(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bool]]:
    """(reference, current, which columns had drift injected)."""
    rng = np.random.default_rng(seed)
    n_ref = REFERENCE_ROWS[seed % len(REFERENCE_ROWS)]
    n_cur = int(rng.integers(200, 1500))
    shifted = {name: bool(rng.random() < 0.5) for name in COLUMNS}
    ref = _table(rng, n_ref, {name: False for name in COLUMNS})
    cur = _table(rng, n_cur, shifted)
    return ref, cur, shifted


def to_numpy_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """The same values in the NumPy-backed dtypes pandas gives them (Int64 with gaps as float64, ...)."""
    out = frame.copy()
    for name in NULLABLE:
        col = frame[name]
        if str(col.dtype) == "boolean":
            out[name] = col.astype(object).where(col.notna(), None) if col.hasnans else col.astype(bool)
        else:
            out[name] = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _table(rng: np.random.Generator, n: int, shift: dict[str, bool]) -> pd.DataFrame:
    def gaps(values: pd.api.extensions.ExtensionArray) -> pd.api.extensions.ExtensionArray:
        values[rng.random(n) < 0.08] = pd.NA
        return values

    bands = pd.CategoricalDtype(["low", "mid", "high", "extreme", "unused"])
    # Two of five categories used: the z-test with a small reference, where zero counts gave p = NaN.
    band_p = [0.7, 0.0, 0.3, 0.0, 0.0] if not shift["band"] else [0.6, 0.0, 0.4, 0.0, 0.0]
    mixed_values = np.array(["a", "b", 1, 2], dtype=object)
    mixed_p = [0.3, 0.3, 0.2, 0.2] if not shift["mixed"] else [0.2, 0.2, 0.3, 0.3]
    mixed = mixed_values[rng.choice(4, n, p=mixed_p)]
    mixed[0] = mixed[-1] = "a"  # first and last a string, so Evidently calls the column categorical
    return pd.DataFrame(
        {
            "num": rng.normal(0.3 if shift["num"] else 0.0, 1.0, n),
            "count": rng.poisson(40 if shift["count"] else 36, n),
            "level": rng.choice(6, n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1] if shift["level"] else None),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.4, 0.4, 0.2] if shift["color"] else None),
            "band": pd.Categorical(rng.choice(bands.categories, n, p=band_p), dtype=bands),
            "n_int": gaps(pd.array(rng.integers(0, 8 if not shift["n_int"] else 10, n), dtype="Int64")),
            "n_float": gaps(pd.array(rng.normal(0.25 if shift["n_float"] else 0.0, 1.0, n), dtype="Float64")),
            "n_flag": gaps(pd.array(rng.random(n) < (0.6 if shift["n_flag"] else 0.5), dtype="boolean")),
            "mixed": pd.Series(mixed, dtype=object),
        }
    )


EVIDENTLY_METHODS = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
}


def compare(seed: int, evidently: dict) -> list[tuple[str, str, bool, str]]:
    """driftloop on `messy_pair(seed)` against Evidently's record for it: (column, rule, holds, detail) rows.

    Where both test a column: same test, same verdict, same score (to 1e-9 relative). The documented
    differences, asserted as such: nullable columns (no Evidently verdict on the tables as built; the
    verdict Evidently gives the same values in NumPy dtypes, where it has one), the mixed column (an
    Evidently verdict; a driftloop error, not counted), and the dataset verdict that follows from those.
    """
    from driftloop.monitor.drift import DriftDetector
    from driftloop.monitor.tables import infer_columns

    reference, current, _ = messy_pair(seed)
    specs, _ = infer_columns(reference, current)
    result = DriftDetector(specs, drift_share=0.5).fit(reference).evaluate(current)
    ours = {c.column: c for c in result.columns}
    built, numpy_dtypes = evidently["as_built"]["columns"], evidently["numpy_dtypes"]["columns"]
    rows: list[tuple[str, str, bool, str]] = []

    def same(name: str, theirs: dict, rule: str) -> None:
        col = ours.get(name)
        got = None if col is None else (EVIDENTLY_METHODS.get(col.method or ""), col.drift, col.statistic)
        want = (theirs["method"], theirs["drift"], theirs["score"])
        holds = (
            got is not None
            and got[:2] == want[:2]
            and got[2] is not None
            and abs(got[2] - want[2]) <= 1e-9 * abs(want[2]) + 1e-12
        )
        rows.append((name, rule, holds, f"driftloop {got}, Evidently {want}"))

    expected_drifted = []
    for name in COLUMNS:
        if name == "mixed":
            col = ours.get(name)
            holds = (
                name in built
                and col is not None
                and col.drift is None
                and (col.error or "").startswith("values of more than one type")
            )
            rows.append(
                (name, "Evidently tests it, driftloop: the column's error", holds, str(col and col.error))
            )
        elif name == "n_flag":
            col = ours.get(name)
            holds = (
                name not in built and name not in numpy_dtypes and col is not None and col.drift is not None
            )
            rows.append((name, "Evidently leaves it out (both dtypes), driftloop tests it", holds, ""))
            expected_drifted.append(bool(col and col.drift))
        elif name in NULLABLE:
            rows.append((name, "Evidently leaves the nullable dtype out", name not in built, ""))
            same(name, numpy_dtypes[name], "same as Evidently on the NumPy-dtype copy")
            expected_drifted.append(numpy_dtypes[name]["drift"])
        else:
            same(name, built[name], "same as Evidently")
            expected_drifted.append(built[name]["drift"])
    share = sum(expected_drifted) / len(expected_drifted)
    rows.append(
        (
            "(dataset)",
            "verdict from Evidently's column verdicts, nullable counted, mixed not",
            result.dataset_drift == (share >= 0.5) and result.share == share,
            f"driftloop {result.share}, expected {share}; Evidently as built {evidently['as_built']['dataset_drift']}",
        )
    )
    return rows
