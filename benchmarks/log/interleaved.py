"""The window-only pass again on the trees `run.py` left in benchmarks/log/.data, the four hourly histories
interleaved round by round (so a burst of load from other jobs on the machine hits all of them alike).

    .venv/bin/python benchmarks/log/interleaved.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DATA, new_pass  # noqa: E402

TREES = ["hourly-1d", "hourly-30d", "hourly-1d-compacted", "hourly-30d-compacted"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    rounds = ap.parse_args().rounds
    times: dict[str, list[float]] = {t: [] for t in TREES}
    for tree in TREES:
        new_pass(DATA / tree, None)  # warm-up
    for _ in range(rounds):
        for tree in TREES:
            start = time.perf_counter()
            new_pass(DATA / tree, None)
            times[tree].append(time.perf_counter() - start)
    medians = {t: round(statistics.median(v), 4) for t, v in times.items()}
    print(json.dumps({"median_seconds": medians, "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
