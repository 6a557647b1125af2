"""driftloop against the verdicts Evidently 0.7 gave on random messy tables (category dtypes with unused
categories, nullable dtypes with gaps, a mixed str/int column).

Evidently cannot be installed beside driftloop (it does not import with pandas 3), so
`benchmarks/drift/differential.py` runs it in its own environment and pins its figures in
`tests/data/evidently_messy_tables.json`; this test rebuilds the same tables and checks driftloop
against them, column by column (rules in `tests/drift_messy_tables.compare`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.drift_messy_tables import COLUMNS, compare

PINNED = json.loads((Path(__file__).parents[1] / "data" / "evidently_messy_tables.json").read_text())


def test_the_pinned_figures_cover_every_test_and_both_verdicts() -> None:
    assert PINNED["evidently"] == "0.7.23" and len(PINNED["seeds"]) >= 24
    seen = {
        (name, col["method"], col["drift"])
        for record in PINNED["seeds"].values()
        for name, col in record["as_built"]["columns"].items()
    }
    assert {(m, d) for name, m, d in seen if name == "band"} >= {
        ("Z-test p_value", True),
        ("Z-test p_value", False),
    }
    assert {m for _, m, _ in seen} == {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Wasserstein distance (normed)",
        "Jensen-Shannon distance",
    }
    assert {d for _, _, d in seen} == {True, False}


@pytest.mark.parametrize("seed", sorted(PINNED["seeds"], key=int))
def test_same_verdicts_as_evidently_and_the_documented_differences(seed: str) -> None:
    rows = compare(int(seed), PINNED["seeds"][seed])
    assert {column for column, *_ in rows} == {*COLUMNS, "(dataset)"}
    failed = [f"{column}: {rule}: {detail}" for column, rule, holds, detail in rows if not holds]
    assert not failed, "\n".join(failed)
