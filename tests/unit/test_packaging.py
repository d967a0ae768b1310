"""What ships: the wheel holds the product only, and the hub's side imports no Pulumi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.paths import cache_dir

REPO = Path(__file__).resolve().parents[2]

# What a JupyterHub image needs none of: the engine's SDKs and the postgres:// driver.
OPERATOR_ONLY = ("pulumi", "pulumi_kubernetes", "pg8000")


def test_spawner_imports_without_the_pulumi_sdk():
    # A None entry in sys.modules makes `import pulumi` raise ImportError, as in a hub image
    # where the package is not installed; any import of it, however indirect, fails the test.
    code = (
        "import sys\n"
        f"for name in {OPERATOR_ONLY!r}: sys.modules[name] = None\n"
        "import jupyternetes.spawner\n"
        "from jupyternetes.spawner import JupyternetesSpawner\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('jupyternetes.'))\n"
        "print('\\n'.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    # The spawner's allowed rooms (ARCHITECTURE.md): crd/, kube/, render/ and itself.
    rooms = {name.split(".")[1] for name in loaded}
    assert "spawner" in rooms and rooms <= {"spawner", "crd", "kube", "render"}, sorted(rooms)


# Distributions (PEP 503 names) a hub image must not get from `jupyternetes[spawner]`.
OPERATOR_ONLY_DISTRIBUTIONS = ("pulumi", "pulumi-kubernetes", "pg8000")


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this repository (no dependencies), built once for the module."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("jupyternetes-*.whl")
    return built


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: the tests run with the repository on it, where pip
    would find the package's build metadata and call it installed already."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _pip(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout, env=_clean_env(),
                          cwd=cache_dir())


def test_spawner_extra_installs_no_pulumi_in_a_fresh_virtualenv(wheel, tmp_path):
    # What a hub image gets from `pip install 'jupyternetes[spawner]'`: a fresh virtualenv (no
    # pip of its own: this interpreter's pip installs into it with --python), the package from
    # its wheel, every dependency from a local wheelhouse (no index). The wheelhouse is kept in
    # the harness cache; it is filled from PyPI (the one network use) only when a requirement is
    # not in it yet, e.g. the first run or after the dependencies changed.
    wheelhouse = cache_dir() / "wheels" / "spawner-extra"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    requirement = f"jupyternetes[spawner] @ {wheel.as_uri()}"
    install = ("--python", str(python), "install", "-q", "--no-compile", "--no-index",
               "--find-links", str(wheelhouse), requirement)
    done = _pip(*install)
    if done.returncode != 0:
        fill = _pip("wheel", "-q", "--wheel-dir", str(wheelhouse), requirement)
        assert fill.returncode == 0, f"filling {wheelhouse} from PyPI: {fill.stderr[-2000:]}"
        for stale in wheelhouse.glob("jupyternetes-*.whl"):  # always this tree's own wheel
            stale.unlink()
        done = _pip(*install)
    assert done.returncode == 0, done.stderr[-2000:]

    # Outside the repository and without PYTHONPATH: only what the venv holds is importable.
    code = (
        "import json, importlib.metadata as md\n"
        "import jupyternetes, jupyternetes.spawner\n"
        "from jupyternetes.spawner import JupyternetesSpawner\n"
        "print(json.dumps({'file': jupyternetes.__file__,\n"
        "                  'dists': sorted(d.metadata['Name'] for d in md.distributions())}))\n"
    )
    probe = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                           cwd=tmp_path, env=_clean_env(), timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout)
    assert Path(found["file"]).is_relative_to(venv), found["file"]
    dists = {_normalized(name) for name in found["dists"]}
    assert {"jupyternetes", "jupyterhub", "kubernetes"} <= dists, sorted(dists)
    pulled = sorted(d for d in dists
                    if d in OPERATOR_ONLY_DISTRIBUTIONS or d.startswith("pulumi"))
    assert not pulled, f"jupyternetes[spawner] installed operator-only packages: {pulled}"
    # The console script there says what to install for the operator's commands (before any
    # cluster access: no kubeconfig is needed to see the message).
    cli = subprocess.run([str(venv / "bin" / "jupyternetes"), "operator"], capture_output=True,
                         text=True, cwd=tmp_path, env=_clean_env(), timeout=120)
    assert cli.returncode == 2 and "pip install 'jupyternetes[operator]'" in cli.stderr, (
        cli.stderr[-2000:])


def test_the_wheel_holds_the_package_and_its_data_but_no_harness(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"jupyternetes", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert not [n for n in names if "/harness/" in n or n.startswith(("harness", "tests"))]
    # The CRDs and the deploy stack's example template are package data (no repository needed).
    for crd in (REPO / "crds").glob("*.yaml"):
        assert f"jupyternetes/crd/manifests/{crd.name}" in names
    assert "jupyternetes/deploy/examples/seed-template.yaml" in names
