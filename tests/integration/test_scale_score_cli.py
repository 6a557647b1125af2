"""`driftloop score` through the real entry point: `--dask` means what it means for `train`, and the ranked
export (`--top`, `--by`, `--top-out`) writes the best rows as CSV and Excel with the id column."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.scale_support import ScaleProject, make_project
from tests.integration.test_data_cli import cli_in_process

ID = "wine_id"


def _with_id_column(project: ScaleProject) -> ScaleProject:
    cfg = yaml.safe_load(project.config.read_text())
    cfg["data"]["id_column"] = ID
    project.config.write_text(yaml.safe_dump(cfg))
    return project


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame) -> Iterator[ScaleProject]:
    proj = _with_id_column(make_project(tmp_path_factory.mktemp("multi"), red))
    yield proj
    proj.stores.close()


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame) -> Iterator[ScaleProject]:
    good = red.assign(quality=(red["quality"] >= 7).astype(int))  # classes 0 and 1
    proj = _with_id_column(make_project(tmp_path_factory.mktemp("binary"), good))
    yield proj
    proj.stores.close()


@pytest.fixture
def wines(red: pd.DataFrame, tmp_path: Path) -> Path:
    src = tmp_path / "wines.csv"
    red.head(203).assign(**{ID: [f"w{i:04d}" for i in range(203)]}).to_csv(src, index=False)
    return src


def _score(project: ScaleProject, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return cli_in_process(
        project.config.parent, monkeypatch, capsys, "score", "-c", str(project.config), *args
    )


def _assert_xlsx_equals_csv(path: Path, csv: pd.DataFrame) -> None:
    """Same header, rows and values; floats to the 16 significant digits openpyxl writes (Excel shows 15)."""
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True)
    rows = [list(row) for row in book["top"].iter_rows(values_only=True)]
    book.close()
    assert rows[0] == csv.columns.tolist()
    sheet = pd.DataFrame(rows[1:], columns=rows[0])
    for name in csv.columns:
        if csv[name].dtype.kind == "f":
            np.testing.assert_allclose(sheet[name], csv[name], rtol=1e-15)
        else:
            assert sheet[name].tolist() == csv[name].tolist(), name


@pytest.mark.parametrize("address", ["tcp://", "nohost:abc", "http://x", "tcp://host:99999"])
def test_a_malformed_dask_address_exits_2_naming_the_flag_in_score_and_train(
    multiclass: ScaleProject, wines: Path, tmp_path: Path, monkeypatch, capsys, address: str
) -> None:
    out = tmp_path / "out"
    code, _, err = _score(
        multiclass, monkeypatch, capsys, "-i", str(wines), "-o", str(out), "--dask", address
    )
    assert code == 2, err
    assert f"--dask {address!r}: not a Dask scheduler address" in err
    assert "Traceback" not in err and not out.exists()

    code, _, err = cli_in_process(
        multiclass.config.parent,
        monkeypatch,
        capsys,
        "--config",
        str(multiclass.config),
        "train",
        "--dask",
        address,
    )
    assert code == 2, err
    assert f"--dask {address!r}: not a Dask scheduler address" in err


def test_score_dask_local_starts_a_local_cluster_like_train(
    multiclass: ScaleProject, wines: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    code, stdout, err = _score(
        multiclass, monkeypatch, capsys, "-i", str(wines), "-o", str(out), "--dask", "local", "--workers", "1",
        "--no-log",
    )  # fmt: skip
    assert code == 0, err
    assert "scored 203 of 203 rows" in stdout
    assert len(pd.read_parquet(out / "predictions")) == 203


def test_top_percent_by_a_class_probability_as_csv_and_excel_with_ids(
    multiclass: ScaleProject, wines: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    copy = tmp_path / "share" / "best.xlsx"
    code, stdout, err = _score(
        multiclass, monkeypatch, capsys, "-i", str(wines), "-o", str(out), "--no-log",
        "--top", "10%", "--by", "proba:7", "--top-out", str(copy),
    )  # fmt: skip
    assert code == 0, err
    assert "top 21 rows by proba_7" in stdout

    scored = pd.read_parquet(out / "predictions")
    top = pd.read_csv(out / "top.csv")
    assert len(top) == math.ceil(0.10 * 203) == 21
    assert top.columns.tolist() == ["rank", ID, "request_id", "proba_7", "prediction"]
    assert top["rank"].tolist() == list(range(1, 22))
    assert top["proba_7"].is_monotonic_decreasing
    expected = scored.sort_values("proba_7", ascending=False, kind="stable").head(21)
    assert top[ID].tolist() == expected[ID].tolist()  # the ids of the rows with the highest proba_7
    np.testing.assert_array_equal(top["proba_7"], expected["proba_7"])

    for excel in (out / "top.xlsx", copy):
        _assert_xlsx_equals_csv(excel, top)


def test_top_count_defaults_to_the_positive_class_of_a_binary_model(
    binary: ScaleProject, wines: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    code, stdout, err = _score(
        binary, monkeypatch, capsys, "-i", str(wines), "-o", str(out), "--no-log", "--top", "7"
    )
    assert code == 0, err
    top = pd.read_csv(out / "top.csv")
    assert len(top) == 7 and "proba_1" in top.columns
    assert (
        top["proba_1"].tolist() == sorted(pd.read_parquet(out / "predictions")["proba_1"], reverse=True)[:7]
    )
    _assert_xlsx_equals_csv(out / "top.xlsx", top)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "0"], "--top '0'"),
        (["--top", "150%"], "--top '150%'"),
        (["--top", "abc"], "--top 'abc'"),
        (["--top", "0%"], "--top '0%'"),
        (["--top", "10", "--by", "proba:42"], "--by 'proba:42': not a score of this model"),
        (["--top", "10", "--by", "prediction"], "--by prediction"),
        (["--top", "10"], "--top on a multiclass model needs --by"),
        (["--by", "proba:7"], "--by needs --top"),
        (["--top", "10", "--by", "proba:7", "--top-out", "x.pdf"], "--top-out"),
    ],
)
def test_bad_ranking_options_exit_2_naming_the_option_and_write_nothing(
    multiclass: ScaleProject, wines: Path, tmp_path: Path, monkeypatch, capsys, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code, _, err = _score(
        multiclass, monkeypatch, capsys, "-i", str(wines), "-o", str(out), "--no-log", *args
    )
    assert code == 2, err
    assert message in err
    assert not out.exists()
