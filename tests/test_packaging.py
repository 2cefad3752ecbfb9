"""The wheel as a user gets it: one flightrec namespace, extras that bring only what they need."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run(*command: str | Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    for folder in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source)
    [built] = dist.glob("flight_recorder-*.whl")
    return built


def test_the_wheel_installs_one_namespace_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"flightrec", next(t for t in top if t.endswith(".dist-info"))}, top
    for needed in ("flightrec/store/migrations/0001_spans.up.sql", "flightrec/dashboards/favicon.png",
                   "flightrec/py.typed", "flightrec/collector/writer.py", "flightrec/dashboards/views/story.py"):
        assert needed in names, needed
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Name: flight-recorder" in metadata
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(line.split()[1] for line in base) == ["httpx<1,>=0.27", "pydantic<3,>=2.7"], base
    assert {"sdk", "cli", "server"} <= {line.split()[1] for line in metadata.splitlines()
                                       if line.startswith("Provides-Extra:")}
    pinned = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "==" in line.split(";")[0]]
    assert pinned == [], f"exact pins: {pinned}"


def test_an_sdk_install_is_small_and_the_command_says_what_to_add(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, command = venv / "bin" / "python", venv / "bin" / "flightrec"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[sdk]")
    run(python, "-c", "from flightrec.sdk import ControlClient; ControlClient('http://127.0.0.1:9')")
    for absent in ("chdb", "streamlit", "sklearn", "typer", "store", "collector"):
        assert run(python, "-c", f"import {absent}", check=False).returncode != 0, f"{absent} came with the SDK"
    hint = run(command, "--version", check=False)
    assert hint.returncode == 2 and "flight-recorder[cli]" in hint.stderr and "Traceback" not in hint.stderr

    run(python, "-m", "pip", "install", "-q", f"{wheel}[cli]")
    assert run(command, "--version").stdout.strip() == f"flightrec {PYPROJECT['project']['version']}"
    down = run(command, "alerts", "--api", "http://127.0.0.1:9", check=False)
    assert down.returncode == 1 and "cannot reach the API" in down.stdout
    serve = run(command, "serve", check=False)
    assert serve.returncode == 2 and "flight-recorder[server]" in serve.stderr + serve.stdout
