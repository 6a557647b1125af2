"""The public API imports, names what it says, and importing the package does no heavy work."""

import subprocess
import sys

import driftloop


def test_every_export_resolves() -> None:
    for name in driftloop.__all__:
        assert getattr(driftloop, name) is not None, name


def test_import_is_light() -> None:
    code = "import sys, driftloop; print(sorted(m for m in ('mlflow', 'pandas', 'sklearn', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
