from pathlib import Path

import pytest
import yaml

from driftloop.config import config_from_dict, load_config
from driftloop.errors import ConfigError


def test_defaults_and_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    cfg = config_from_dict({"data": {"target": "y", "path": "d.csv"}}, base_dir=tmp_path, environ={})
    assert cfg.data.path == (tmp_path / "d.csv").resolve()
    assert cfg.stores.root == (tmp_path / ".driftloop").resolve()
    assert cfg.stores.resolved_database_url().startswith("sqlite:///")
    assert cfg.metric("multiclass") == "accuracy"
    assert cfg.metric("regression") == "rmse"


def test_wrong_value_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"data": {"target": "y"}, "training": {"budget": {"seconds": 0}}}, environ={})
    assert "training.budget.seconds: must be > 0" in str(exc.value)


def test_unknown_key_and_missing_target_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"data": {"tagret": "y"}}, environ={})
    text = str(exc.value)
    assert "data.tagret: is not a known key" in text
    assert "data.target: is required" in text


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "DRIFTLOOP_TRAINING__BUDGET__SECONDS": "30",
        "DRIFTLOOP_DATABASE_URL": "postgresql://u@h/db",
        "DRIFTLOOP_ADMIN_TOKEN": "s3cret",
        "DRIFTLOOP_ADMIN_TOKEN_PREVIOUS": "old",
    }
    cfg = config_from_dict({"data": {"target": "y"}}, environ=env)
    assert cfg.training.budget.seconds == 30
    assert cfg.stores.resolved_database_url() == "postgresql://u@h/db"
    assert cfg.stores.resolved_tracking_uri() == "postgresql://u@h/db"  # one setting moves both
    assert cfg.serving.admin_token == "s3cret"
    assert cfg.serving.admin_token_previous == "old"


def test_bad_environment_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"gate.confidence: must be < 1"):
        config_from_dict({"data": {"target": "y"}}, environ={"DRIFTLOOP_GATE__CONFIDENCE": "3"})


def test_missing_data_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump({"data": {"target": "y", "path": "nope.csv"}}))
    with pytest.raises(ConfigError, match="data.path: file .*nope.csv does not exist"):
        load_config(path, environ={})


def test_rollout_steps_must_end_at_full_traffic() -> None:
    with pytest.raises(ConfigError, match="loop.rollout.steps"):
        config_from_dict({"data": {"target": "y"}, "loop": {"rollout": {"steps": [0.1, 0.5]}}}, environ={})


def test_a_multivariate_trigger_without_multivariate_monitoring_is_refused(tmp_path: Path) -> None:
    raw = {"data": {"target": "quality"}, "loop": {"triggers": [{"kind": "multivariate_drift"}]}}
    with pytest.raises(ConfigError) as refused:
        config_from_dict(raw, base_dir=tmp_path, environ={})
    assert refused.value.problems == [
        "loop.triggers: a multivariate_drift trigger needs monitoring.multivariate: true "
        "(else no pass computes it and the trigger could never fire)"
    ]
    config_from_dict({**raw, "monitoring": {"multivariate": True}}, base_dir=tmp_path, environ={})


def test_an_outcome_win_needs_a_split_step_and_names_the_key() -> None:
    rule = {"name": "conversion"}
    with pytest.raises(ConfigError) as refused:
        config_from_dict(
            {"data": {"target": "y"}, "loop": {"rollout": {"steps": [1.0], "outcome": rule}}}, environ={}
        )
    assert "loop.rollout" in str(refused.value) and "outcome.require: win" in str(refused.value)
    no_loss = {"steps": [1.0], "outcome": rule | {"require": "no_loss"}}
    cfg = config_from_dict({"data": {"target": "y"}, "loop": {"rollout": no_loss}}, environ={})
    assert cfg.loop.rollout.outcome is not None and cfg.loop.rollout.outcome.missing == "zero"
    with pytest.raises(ConfigError, match="loop.rollout.outcome.name"):
        config_from_dict(
            {"data": {"target": "y"}, "loop": {"rollout": {"outcome": {"name": ""}}}}, environ={}
        )
