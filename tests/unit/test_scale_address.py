"""`resolve_address`: the one reading of `--dask` / `scale.dask_scheduler` that `train` and `score` share."""

from __future__ import annotations

from pathlib import Path

import dask.config
import pytest
import yaml

from driftloop.errors import UserError
from driftloop.scale.cluster import ENV_SCHEDULER, LOCAL, WORKER_CONFIG, resolve_address

pytestmark = pytest.mark.no_database


def test_local_means_a_local_cluster_from_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_address("local") == LOCAL
    assert resolve_address(None, " Local ") == LOCAL
    monkeypatch.setenv(ENV_SCHEDULER, "local")
    assert resolve_address(None, None) == LOCAL


def test_a_well_formed_address_is_kept_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SCHEDULER, "tcp://env:8786")
    assert resolve_address("tcp://flag:8786", "tcp://cfg:8786") == "tcp://flag:8786"
    assert resolve_address(None, "sched:8786") == "sched:8786"
    assert resolve_address(None, None) == "tcp://env:8786"
    monkeypatch.delenv(ENV_SCHEDULER)
    assert resolve_address(None, None) is None


@pytest.mark.parametrize(
    ("flag", "configured", "message"),
    [
        ("tcp://", None, "--dask 'tcp://': not a Dask scheduler address"),
        ("nohost:abc", None, "--dask 'nohost:abc'"),
        ("http://x", None, "unknown protocol 'http'"),
        (None, "tcp://:8786", "scale.dask_scheduler"),
    ],
)
def test_a_malformed_address_names_its_source(flag: str | None, configured: str | None, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        resolve_address(flag, configured)


def test_the_images_dask_config_says_what_local_clusters_do() -> None:
    # deploy/dask/distributed.yaml goes to /etc/dask in the image: remote workers get the local clusters' setting.
    repo = Path(__file__).parents[2]
    shipped = yaml.safe_load((repo / "deploy" / "dask" / "distributed.yaml").read_text())
    for key, value in WORKER_CONFIG.items():
        assert dask.config.get(key, config=shipped, default="absent") == value
    assert (
        "COPY deploy/dask/distributed.yaml /etc/dask/driftloop-distributed.yaml"
        in (repo / "Dockerfile").read_text()
    )
