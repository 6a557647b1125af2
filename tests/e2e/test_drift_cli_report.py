"""`driftloop drift` end to end: the CLI on the wine files, its JSON against the documented schema, and the HTML
report opened in headless Chromium (Debian package `chromium`) with its charts drawn and a screenshot kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from driftloop.monitor.report import load_schema
from tests.conftest import RED, WHITE

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftloop.cli.monitor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed: install the Debian package `chromium` (make setup does)"
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("drift-report")
    proc = run_cli("drift", str(RED), str(WHITE), "--json", "r.json", "--html", "r.html", cwd=out)
    return out, json.loads((out / "r.json").read_text()) if proc.returncode == 0 else {}, proc


def test_drift_cli_writes_json_matching_the_schema(
    report: tuple[Path, dict, subprocess.CompletedProcess[str]],
) -> None:
    out, data, proc = report
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(data, load_schema())
    drift = data["drift"]
    assert drift["dataset_drift"] is True and drift["n_tested"] == 12
    alcohol = drift["columns"]["alcohol"]
    assert alcohol["method"] == "wasserstein" and alcohol["threshold"] == 0.1 and alcohol["drift"] is True
    assert drift["columns"]["quality"]["method"] == "jensenshannon"  # integer with <= 10 values: categorical
    assert "dataset drift" in proc.stdout


def test_drift_cli_bad_input_exits_2(tmp_path: Path) -> None:
    proc = run_cli("drift", str(tmp_path / "missing.csv"), str(WHITE), cwd=tmp_path)
    assert proc.returncode == 2 and "missing.csv: no such file" in proc.stderr
    proc = run_cli("drift", str(RED), str(WHITE), "--drift-share", "1.5", cwd=tmp_path)
    assert proc.returncode == 2 and "--drift-share" in proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_html_report_renders_its_charts_in_headless_chromium(
    report: tuple[Path, dict, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    out, data, proc = report
    assert proc.returncode == 0, proc.stderr
    page = (out / "r.html").resolve()
    text = page.read_text()
    assert "<script src=" not in text and "<link " not in text  # self-contained: opens offline

    with tempfile.TemporaryDirectory() as profile:
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), profile=Path(profile))
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Plotly draws each figure into an <svg class="main-svg">; 12 feature charts, each with two layers.
    n_svg = dom.stdout.count('class="main-svg"')
    assert n_svg >= 12, f"only {n_svg} plotly svg elements in the rendered page"
    assert "alcohol: wasserstein" in dom.stdout

    shot = tmp_path / "drift-report.png"
    with tempfile.TemporaryDirectory() as profile:
        run = chromium(
            "--window-size=1280,2400",
            "--virtual-time-budget=10000",
            f"--screenshot={shot}",
            page.as_uri(),
            profile=Path(profile),
        )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    # Current-data bars (orange #f58518 at 70% opacity over Plotly's #e5ecf6 plot background: about
    # (240, 164, 91)) cover a visible part of the page: the charts were drawn, the page is not blank.
    colors = image.getcolors(maxcolors=1 << 22) or []
    orange = sum(n for n, (r, g, b) in colors if abs(r - 240) < 16 and abs(g - 164) < 16 and abs(b - 91) < 16)
    assert orange > 2000, f"screenshot {shot} shows almost no chart bars ({orange} orange pixels)"
    print(f"screenshot: {shot}")
    if os.environ.get("DRIFTLOOP_TEST_ARTIFACTS"):
        keep = Path(os.environ["DRIFTLOOP_TEST_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)


def test_drift_cli_on_messy_column_types(tmp_path: Path) -> None:
    """A category dtype with unused categories, nullable dtypes and a column that is int in one table and
    str in the other: verdicts for the first two, that column's error for the third, no traceback."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(5)
    bands = pd.CategoricalDtype(["low", "mid", "high", "extreme"])

    def table(p_high: float, shift: float, code: object) -> pd.DataFrame:
        n = 400
        return pd.DataFrame(
            {
                "band": pd.Series(rng.choice(["low", "high"], n, p=[1 - p_high, p_high]), dtype=bands),
                "count": pd.array(rng.integers(0, 50, n) + int(shift * 10), dtype="Int64"),
                "level": pd.array(rng.normal(shift, 1, n), dtype="Float64"),
                "code": pd.Series([code] * n, dtype=object),
            }
        )

    table(0.2, 0.0, 7).to_parquet(tmp_path / "ref.parquet")
    table(0.8, 1.0, "B7").to_parquet(tmp_path / "cur.parquet")
    proc = run_cli("drift", "ref.parquet", "cur.parquet", "--json", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(data, load_schema())
    cols = data["drift"]["columns"]
    assert (cols["band"]["method"], cols["band"]["drift"]) == ("z", True)
    assert (cols["count"]["kind"], cols["count"]["method"], cols["count"]["drift"]) == ("numeric", "ks", True)
    assert (cols["level"]["kind"], cols["level"]["drift"]) == ("numeric", True)
    assert cols["code"]["drift"] is None and cols["code"]["error"].startswith("values of more than one type")
    assert data["drift"]["n_tested"] == 3 and data["drift"]["n_drifted"] == 3


def test_multivariate_flag_finds_a_flipped_correlation_the_columns_hide(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    def table(seed: int, correlation: float) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=2000)
        y = correlation * x + np.sqrt(1 - correlation**2) * rng.normal(size=2000)
        return pd.DataFrame({"x": x, "y": y, "z": rng.normal(size=2000)})

    table(0, 0.9).to_csv(tmp_path / "ref.csv", index=False)
    table(1, -0.9).to_csv(tmp_path / "cur.csv", index=False)
    proc = run_cli("drift", "ref.csv", "cur.csv", "--multivariate", "--json", "r.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(report, load_schema())
    assert report["drift"]["dataset_drift"] is False
    assert [m["drift"] for m in report["multivariate"]] == [True, True]
    assert "multivariate domain_classifier" in proc.stdout and "driven by" in proc.stdout
