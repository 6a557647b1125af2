"""What the Dockerfile's final stage holds and does, checked without a Docker engine.

The build stage runs `uv sync --frozen --no-dev --no-editable` into /opt/venv; here the same command fills a
temp venv, and the tests check what the image relies on: runtime dependencies only, driftloop installed as
a wheel with its migration scripts, and the HEALTHCHECK command (read from the Dockerfile) passing against a
real `driftloop serve` from that venv and failing once it stops.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import backend, database_url

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # As the Makefile finds it: on PATH, or installed as a module by `make bootstrap`.
    uv = [shutil.which("uv")] if shutil.which("uv") else ["python3", "-m", "uv"]
    venv = tmp_path_factory.mktemp("image") / "venv"
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never")
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [*uv, "sync", "--frozen", "--no-dev", "--no-editable", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=600,
    )
    return venv


def _python(venv: Path, code: str) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip()


@pytest.mark.no_database
def test_final_stage_has_runtime_dependencies_only(runtime_venv: Path) -> None:
    dev_only = ["pytest", "ruff", "hypothesis", "schemathesis", "kubernetes_validate"]
    found = _python(
        runtime_venv,
        f"import importlib.util, json; print(json.dumps([m for m in {dev_only!r} if importlib.util.find_spec(m)]))",
    )
    assert json.loads(found) == []
    assert (runtime_venv / "bin" / "driftloop").is_file()
    assert (runtime_venv / "bin" / "mlflow").is_file(), (
        "the compose stack runs the MLflow server from this image"
    )


def test_driftloop_is_a_wheel_with_its_migrations(runtime_venv: Path, tmp_path: Path) -> None:
    where = Path(_python(runtime_venv, "import driftloop; print(driftloop.__file__)"))
    assert runtime_venv in where.parents, "installed into the venv, not an editable link to src/"
    shipped = where.parent / "stores" / "alembic" / "versions"
    heads = sorted(
        p.stem
        for p in (Path(__file__).resolve().parents[2] / "src/driftloop/stores/alembic/versions").glob("0*.py")
    )
    assert heads and all((shipped / f"{h}.py").is_file() for h in heads), "every migration is in the wheel"
    revision = _python(
        runtime_venv,
        "from driftloop.stores.metadata import MetadataStore; from driftloop.stores import migrations as m; "
        f"s = MetadataStore.connect('{database_url(tmp_path)}'); print(m.current_revision(s.engine))",
    )
    assert revision == heads[-1], "a new database is migrated to the newest revision the wheel ships"


def _healthcheck_command(port: int) -> list[str]:
    """The exec-form HEALTHCHECK CMD of the Dockerfile, aimed at `port` instead of 8000."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK\s.*?\bCMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert match, "the Dockerfile has no exec-form HEALTHCHECK"
    return [arg.replace(":8000/", f":{port}/") for arg in json.loads(match.group(1))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthcheck_passes_on_a_running_server_and_fails_after(runtime_venv: Path, tmp_path: Path) -> None:
    demo = _python(
        runtime_venv, "import driftloop.demodata as d, pathlib; print(pathlib.Path(d.__file__).parent)"
    )
    (tmp_path / "driftloop.yaml").write_text(
        f"project:\n  name: wine\ndata:\n  path: {demo}/winequality-red.csv\n  target: quality\n",
        encoding="utf-8",
    )
    port = _free_port()
    env = dict(
        os.environ, DRIFTLOOP_HOME=str(tmp_path / "home"), PATH=f"{runtime_venv / 'bin'}:{os.environ['PATH']}"
    )
    for key in ("DRIFTLOOP_DATABASE_URL", "DRIFTLOOP_TRACKING_URI", "VIRTUAL_ENV"):
        env.pop(key, None)
    if backend() == "postgres":
        env["DRIFTLOOP_DATABASE_URL"] = database_url(tmp_path / "home")
    server = subprocess.Popen(
        [str(runtime_venv / "bin" / "driftloop"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    check = _healthcheck_command(port)
    check[0] = str(runtime_venv / "bin" / check[0])
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz within 90 s"
            time.sleep(0.3)
        assert subprocess.run(check, timeout=30, check=False).returncode == 0
        # No model promoted yet: alive, not ready. The orchestrators' readiness probes rely on this 503.
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 503
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert subprocess.run(check, capture_output=True, timeout=30, check=False).returncode != 0
