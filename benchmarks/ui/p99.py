"""Does the loop page slow serving? p99 of /v1/predict at a held rate, without and with pages polling /ui/api.

The server is `driftloop serve` (one worker) on the serving benchmark's two LightGBM wine models (A/B, 10 %
challenger, prediction log on). The load is open-loop: one-row requests sent at a fixed rate whatever the
answers' latency (so a slow answer cannot hide by slowing the sender). "With the page" adds `--pages`
simulated open pages, each fetching the five JSON routes the page polls every 5 s, as the page does; the
conditions alternate in short slices (so the machine's other load hits both alike) after a warm-up.

    .venv/bin/python benchmarks/ui/p99.py [--rate 50] [--seconds 10] [--rounds 6] [--pages 10]

Prints a Markdown table (paste it into docs/ui.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from run import build_models, start_driftloop, stop  # noqa: E402

ROUTES = ("/ui/api/now", "/ui/api/history", "/ui/api/traffic", "/ui/api/monitoring", "/ui/api/events")


async def load(base: str, records: list[dict], rate: float, seconds: float, pages: int) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    page_fetches = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(30, pool=None)  # a request waiting for a connection is latency, not a failure
    async with (
        httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client,
        httpx.AsyncClient(base_url=base, timeout=timeout) as browser,  # the pages' own connections
    ):

        async def one(i: int) -> None:
            nonlocal failures
            t0 = time.perf_counter()
            r = await client.post("/v1/predict", json=records[i % len(records)])
            latencies.append((time.perf_counter() - t0) * 1000)
            failures += r.status_code != 200

        async def page(offset: float) -> None:
            nonlocal page_fetches
            await asyncio.sleep(offset)
            while time.monotonic() < stop_at:
                answers = await asyncio.gather(*(browser.get(p) for p in ROUTES))
                assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
                page_fetches += len(answers)
                await asyncio.sleep(5.0)

        pollers = [asyncio.create_task(page(5.0 * k / max(pages, 1))) for k in range(pages)]
        tasks = []
        start = time.monotonic()
        i = 0
        while (now := time.monotonic()) < stop_at:
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        await asyncio.gather(*tasks)
        for p in pollers:
            p.cancel()
    return {"latencies": latencies, "failures": failures, "page_fetches": page_fetches}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="per slice")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--pages", type=int, default=10)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="driftloop-ui-bench-"))
    config, _, records = build_models(root)
    proc, base, _ = start_driftloop(config, 1, compiled=False)
    conditions = (("without the page", 0), (f"with {args.pages} pages polling", args.pages))
    runs: dict[str, list[dict]] = {label: [] for label, _ in conditions}
    try:
        asyncio.run(load(base, records, args.rate, 5, 1))  # warm-up: first requests, first page reads
        # Alternating slices, so that a change in the machine's other load hits both conditions alike.
        for _ in range(args.rounds):
            for label, pages in conditions:
                runs[label].append(asyncio.run(load(base, records, args.rate, args.seconds, pages)))
    finally:
        stop(proc)
    load_avg = os.getloadavg()[0]
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {load_avg:.1f}, Python "
          f"{platform.python_version()}; {args.rate:.0f} req/s, {args.rounds} alternating rounds of "
          f"{args.seconds:.0f} s per condition, 1 worker\n")  # fmt: skip
    print("| run | requests | p50 (ms) | p99 (ms) | p99 per round (ms) | failed | /ui/api fetches |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for label, results in runs.items():
        arr = np.concatenate([r["latencies"] for r in results])
        per_round = ", ".join(f"{np.percentile(r['latencies'], 99):.0f}" for r in results)
        print(
            f"| {label} | {len(arr)} | {np.percentile(arr, 50):.2f} | {np.percentile(arr, 99):.2f} | {per_round} "
            f"| {sum(r['failures'] for r in results)} | {sum(r['page_fetches'] for r in results)} |"
        )


if __name__ == "__main__":
    main()
