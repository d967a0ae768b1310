"""What ships: the wheel holds the product only, and the hub's side imports no Pulumi."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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


def test_the_wheel_holds_the_package_and_its_data_but_no_harness(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("jupyternetes-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"jupyternetes", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert not [n for n in names if "/harness/" in n or n.startswith(("harness", "tests"))]
    # The CRDs and the deploy stack's example template are package data (no repository needed).
    for crd in (REPO / "crds").glob("*.yaml"):
        assert f"jupyternetes/crd/manifests/{crd.name}" in names
    assert "jupyternetes/deploy/examples/seed-template.yaml" in names
