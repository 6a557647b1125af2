"""Differential test of driftloop's drift verdicts against Evidently 0.7 on random messy tables.

    .venv/bin/python benchmarks/drift/differential.py [--seeds 24]

The tables (`tests/drift_messy_tables.py`) hold floats, integers, strings, a category dtype with unused
categories, nullable Int64/Float64/boolean with missing values and an object column of str and int.
Evidently cannot be installed beside driftloop (0.7.23 fails to import with pandas 3: `ImportError:
cannot import name 'infer_dtype_from_object'`), so it runs in this benchmark's own virtual environment
(`.venv-evidently`, see run.py). Writes the figures Evidently gave to
`tests/data/evidently_messy_tables.json`, which `tests/unit/test_drift_evidently_differential.py` checks
driftloop against in `make test`, and a summary to DIFFERENTIAL.md beside this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PINNED = ROOT / "tests" / "data" / "evidently_messy_tables.json"
sys.path[:0] = [str(ROOT), str(HERE)]

from run import EVIDENTLY_SPEC, ensure_evidently  # noqa: E402
from tests.drift_messy_tables import compare  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24)
    args = parser.parse_args()
    python = ensure_evidently()
    seeds = [str(s) for s in range(args.seeds)]
    proc = subprocess.run(
        [str(python), str(HERE / "_evidently_messy.py"), str(ROOT), *seeds],
        capture_output=True,
        text=True,
        check=True,
    )
    evidently = json.loads(proc.stdout)
    version = subprocess.run(
        [str(python), "-c", "import evidently, pandas; print(evidently.__version__, pandas.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    PINNED.parent.mkdir(parents=True, exist_ok=True)
    PINNED.write_text(
        json.dumps(
            {"evidently": version[0], "pandas": version[1], "spec": EVIDENTLY_SPEC, "seeds": evidently},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )

    tally: Counter[tuple[str, str, bool]] = Counter()
    failures = []
    flips = 0
    for seed in seeds:
        record = evidently[seed]
        for column, rule, holds, detail in compare(int(seed), record):
            tally[(column, rule, holds)] += 1
            if not holds:
                failures.append(f"seed {seed} {column}: {rule}: {detail}")
        flips += int(_driftloop_dataset(int(seed)) != record["as_built"]["dataset_drift"])
    lines = [
        "# Differential test: driftloop against Evidently on random messy tables",
        "",
        f"Command: `.venv/bin/python benchmarks/drift/differential.py --seeds {args.seeds}` (from the repository root)",
        "",
        f"Evidently {version[0]} with pandas {version[1]} in `.venv-evidently`; driftloop on Python "
        f"{platform.python_version()}. Tables: `tests/drift_messy_tables.py`, seeds 0-{args.seeds - 1} "
        "(reference 300 to 3,000 rows, both sides of the 1,000-row switch of tests). Figures Evidently gave: "
        "`tests/data/evidently_messy_tables.json`, checked by `tests/unit/test_drift_evidently_differential.py`.",
        "",
        "| column | rule | holds | fails |",
        "|---|---|---|---|",
    ]
    for (column, rule), _ in sorted(Counter({(c, r): 0 for c, r, _ in tally}).items()):
        lines.append(
            f"| {column} | {rule} | {tally[(column, rule, True)]} | {tally[(column, rule, False)]} |"
        )
    lines += [
        "",
        f"Dataset verdict different from Evidently's on the tables as built (nullable columns counted, the "
        f"mixed column not): {flips} of {len(seeds)} seeds.",
        "",
        "Failures:" if failures else "No failures.",
        *[f"- {f}" for f in failures],
        "",
    ]
    (HERE / "DIFFERENTIAL.md").write_text("\n".join(lines))
    print("\n".join(lines))
    sys.exit(1 if failures else 0)


def _driftloop_dataset(seed: int) -> bool | None:
    from tests.drift_messy_tables import messy_pair

    from driftloop.monitor.drift import DriftDetector
    from driftloop.monitor.tables import infer_columns

    reference, current, _ = messy_pair(seed)
    specs, _ = infer_columns(reference, current)
    return DriftDetector(specs).fit(reference).evaluate(current).dataset_drift


if __name__ == "__main__":
    main()
