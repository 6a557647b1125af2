"""`driftloop estimate REF CUR` with a model `train` registered: the estimate, its band and (when CUR has labels)
the realised metrics, as a table and as JSON; bad input exits 2 naming the file, column or version."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_project
from tests.integration.test_data_cli import cli_in_process


@dataclass
class Trained:
    config: Path
    root: Path
    reference: Path
    current: Path
    """Labelled rows from the reference's distribution."""
    unlabelled: Path
    """The same rows as `current` without the target column."""
    white: Path
    """White wines (labelled), which the red-wine model never saw."""


def _project(root: Path, red: pd.DataFrame, white: pd.DataFrame, target: str) -> Trained:
    """Train on half of the red wines (3 trials); the rest split into a reference and a current table."""
    from driftloop.config import load_config
    from driftloop.data.datasets import add_frame
    from driftloop.stores import open_stores
    from driftloop.train.search import train

    order = np.random.default_rng(0).permutation(len(red))
    part = {"train": red.iloc[order[:800]], "ref": red.iloc[order[800:1300]], "cur": red.iloc[order[1300:]]}
    data = root / "train.csv"
    part["train"].to_csv(data, index=False)
    config = write_project(
        root,
        data,
        data={"path": str(data), "target": target},
        training={"budget": {"trials": 3, "seconds": None}, "families": ["lightgbm"], "max_predict_ms": None},
    )
    cfg = load_config(config)
    stores = open_stores(cfg)
    try:
        record, _ = add_frame(stores.metadata, stores.datasets_dir, part["train"], source=str(data))
        train(cfg, record.version, stores=stores, progress=False)
    finally:
        stores.close()
    paths = Trained(
        config, root, root / "ref.csv", root / "cur.parquet", root / "unlabelled.csv", root / "white.csv"
    )
    part["ref"].to_csv(paths.reference, sep=";", index=False)
    part["cur"].to_parquet(paths.current)
    part["cur"].drop(columns=[target]).to_csv(paths.unlabelled, index=False)
    white.sample(600, random_state=0).to_csv(paths.white, index=False)
    return paths


@pytest.fixture(scope="module")
def quality(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame, white: pd.DataFrame) -> Trained:
    """A binary model: is the wine good (quality 6 or more)?"""
    good = lambda f: f.assign(quality=np.where(f.quality >= 6, "good", "plain"))  # noqa: E731
    return _project(tmp_path_factory.mktemp("estimate-binary"), good(red), good(white), "quality")


@pytest.fixture(scope="module")
def alcohol(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame, white: pd.DataFrame) -> Trained:
    """A regression: alcohol from the other measurements."""
    return _project(tmp_path_factory.mktemp("estimate-regression"), red, white, "alcohol")


def _run(p: Trained, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
    return cli_in_process(p.root, monkeypatch, capsys, "estimate", *args, "--config", str(p.config))


def _realised_binary(p: Trained, table: Path) -> tuple[float, float]:
    """Accuracy and ROC AUC of the champion on a table, computed here from the model's own predictions."""
    from sklearn.metrics import roc_auc_score

    from driftloop.config import load_config
    from driftloop.data.io import read_table
    from driftloop.stores import open_stores

    stores = open_stores(load_config(p.config))
    try:
        bundle = stores.tracking.load_bundle(stores.metadata.get_deployment(stores.model_name).champion)
    finally:
        stores.close()
    frame = read_table(table)
    out = bundle.predict_frame(frame)
    y = frame["quality"].astype(str).to_numpy()
    positive = str(bundle.spec.classes[1])
    return float(np.mean(out.labels.astype(str) == y)), float(roc_auc_score(y == positive, out.proba[:, 1]))


def test_binary_estimate_with_realised_metrics_and_json(quality: Trained, monkeypatch, capsys) -> None:  # noqa: ANN001
    out_json = quality.root / "reports" / "estimate.json"
    code, out, err = _run(
        quality, monkeypatch, capsys, str(quality.reference), str(quality.current), "--json", str(out_json)
    )
    assert code == 0, err
    assert "CBPE fitted on 500 reference rows; 299 current rows" in out
    for metric in ("accuracy", "f1_macro", "f1", "roc_auc"):
        assert metric in out
    report = json.loads(out_json.read_text())
    assert report["kind"] == "estimate" and report["model"]["task"] == "binary"
    assert report["reference"]["rows"] == 500 and report["current"]["rows"] == 299
    metrics = report["estimate"]["metrics"]
    accuracy, auc = _realised_binary(quality, quality.current)
    assert metrics["accuracy"]["realised"] == pytest.approx(accuracy)
    assert metrics["roc_auc"]["realised"] == pytest.approx(auc)
    # Same distribution as the reference: the estimate is near the truth and its band is a real interval.
    for name in ("accuracy", "roc_auc"):
        m = metrics[name]
        assert m["low"] < m["value"] < m["high"] and m["high"] - m["low"] < 0.25
        assert abs(m["value"] - m["realised"]) < 0.08, (name, m)


def test_unlabelled_current_has_no_realised_and_white_wine_is_estimated(
    quality: Trained, monkeypatch, capsys
) -> None:  # noqa: ANN001
    code, out, err = _run(
        quality,
        monkeypatch,
        capsys,
        str(quality.reference),
        str(quality.unlabelled),
        "--json",
        str(quality.root / "u.json"),
    )
    assert code == 0, err
    report = json.loads((quality.root / "u.json").read_text())
    assert all(m["realised"] is None for m in report["estimate"]["metrics"].values())
    assert "n/a" in out
    code, _, err = _run(
        quality, monkeypatch, capsys, str(quality.reference), str(quality.white), "--model", "1"
    )
    assert code == 0, err


def test_regression_estimate(alcohol: Trained, monkeypatch, capsys) -> None:  # noqa: ANN001
    code, out, err = _run(
        alcohol,
        monkeypatch,
        capsys,
        str(alcohol.reference),
        str(alcohol.current),
        "--json",
        str(alcohol.root / "r.json"),
    )
    assert code == 0, err
    assert "DLE fitted on 500 reference rows" in out
    metrics = json.loads((alcohol.root / "r.json").read_text())["estimate"]["metrics"]
    assert set(metrics) == {"mae", "rmse"}
    mae = metrics["mae"]
    assert mae["realised"] > 0 and abs(mae["value"] - mae["realised"]) < 0.3 * mae["realised"], mae
    assert metrics["rmse"]["value"] >= mae["value"]


def test_bad_input_exits_2_naming_it(quality: Trained, red: pd.DataFrame) -> None:
    """Through the real entry point in a fresh process: exit 2 and one line naming the problem, no traceback."""
    root = quality.root
    red.drop(columns=["quality"]).head(300).to_csv(root / "no_target.csv", index=False)
    red.drop(columns=["pH"]).head(300).to_csv(root / "no_ph.csv", index=False)
    cases = {
        (str(root / "nope.csv"), str(quality.current)): "nope.csv: no such file",
        (str(root / "no_target.csv"), str(quality.current)): "no_target.csv: no column 'quality'",
        (str(quality.reference), str(root / "no_ph.csv")): "no_ph.csv: missing feature column(s): pH",
        (str(quality.reference), str(quality.current), "--model", "7"): "no version '7'",
    }
    for args, message in cases.items():
        proc = subprocess.run(
            [sys.executable, "-m", "driftloop.cli", "estimate", *args, "--config", str(quality.config)],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=120,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
