"""`driftloop init` on a table with a leaking pair of columns (bike sharing: cnt = casual + registered)."""

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from driftloop.config import TrainingConfig, load_config
from driftloop.starter import write_starter


def _bikes(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    temp = rng.uniform(0, 35, n)
    casual = rng.poisson(20 + temp * 3)
    registered = rng.poisson(200 + temp * 5)
    return pd.DataFrame(
        {
            "temp": temp,
            "humidity": rng.uniform(20, 100, n),
            "casual": casual,
            "registered": registered,
            "cnt": casual + registered,
        }
    )


def test_init_excludes_every_column_of_a_leaking_pair_and_says_how_to_put_them_back(tmp_path: Path) -> None:
    path = tmp_path / "bikes.csv"
    _bikes().to_csv(path, index=False)
    report = write_starter(path, "cnt", out=tmp_path / "driftloop.yaml")
    assert ("casual", "registered") in {leak.columns for leak in report.leaks}
    text = (tmp_path / "driftloop.yaml").read_text()
    assert yaml.safe_load(text)["data"]["exclude"] == ["casual", "registered"]
    cfg = load_config(tmp_path / "driftloop.yaml", environ={})
    assert set(cfg.data.exclude) == {"casual", "registered"}
    assert set(report.features) == {"temp", "humidity"}
    for name in ("casual", "registered"):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"- {name}"))
        assert "likely target leakage" in line and "casual + registered" in line
    assert "Delete a line to use that column as a feature" in text
    # The serving-cost limit is written out, with the default train() applies.
    assert cfg.training.max_predict_ms == TrainingConfig().max_predict_ms == 3.0
    assert "max_predict_ms: 3.0" in text
