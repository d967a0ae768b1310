"""JupyterHub spawner for jupyternetes (entry point `jupyterhub.spawners: jupyternetes`).

Importing this package needs `jupyterhub`; the pure modules (variables, profiles, decisions,
progress, manifests) do not.
"""

from __future__ import annotations

__all__ = ["JupyternetesSpawner"]


def __getattr__(name: str):
    if name == "JupyternetesSpawner":
        from jupyternetes.spawner.spawner import JupyternetesSpawner
        return JupyternetesSpawner
    raise AttributeError(name)
