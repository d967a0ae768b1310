"""The two custom resources' names, and their CustomResourceDefinitions as package data.

One copy of each name: group, version, kinds and plurals are read by the operator, the spawner,
the deploy stack, the admin commands and the tests from here. The CRD documents themselves ship in
the package (`crd/manifests/`, which the repository's `crds/` links to), so the installed operator
and the deploy stack need no checkout of the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

GROUP = "kadense.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
TEMPLATE_KIND = "JupyterNotebookTemplate"
INSTANCE_KIND = "JupyterNotebookInstance"
TEMPLATE_PLURAL = "jupyternotebooktemplates"
INSTANCE_PLURAL = "jupyternotebookinstances"
TEMPLATE_CRD = f"{TEMPLATE_PLURAL}.{GROUP}"
INSTANCE_CRD = f"{INSTANCE_PLURAL}.{GROUP}"

CRD_DIR = Path(str(resources.files(__package__) / "manifests"))


def load_crd_documents(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the YAML files under crd_dir."""
    files = sorted([*crd_dir.rglob("*.yaml"), *crd_dir.rglob("*.yml")])
    docs = [
        doc
        for f in files
        for doc in yaml.safe_load_all(f.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    if not docs:
        raise FileNotFoundError(f"no CustomResourceDefinition YAML found under {crd_dir}")
    return docs
