"""JupyterHub spawner for jupyternetes (entry point `jupyterhub.spawners: jupyternetes`).

- spawner: JupyternetesSpawner, the JupyterHub 6.x Spawner API (needs `jupyterhub`)
- cluster: the hub process's one view of the cluster (shared client, one watch per collection)
- manifests: the instance and its `<instance>-hub` token Secret (pure)
- variables: the variables a spawn sends, and the token Secret's data (pure)
- profiles: the choices on the spawn page (profile_options, allowed_groups), each naming a
  template; user_options -> a Selection (pure)
- traitvars: KubeSpawner's common traits (image, cpu_limit, ...) as `jupyterhub.spawner.*`
  variables (pure)
- formtemplate: the spawn page from a Jinja2 form template, as KubeSpawner renders it
- decisions: instance + pod state -> what the spawner tells the hub (pure)
- progress: spawn progress steps from status and Events (pure)
- names: the user's namespace and the instance's name from their templates (pure)
- namespaces: the user namespace a spawn creates (labels, owner, RoleBindings, quota)
- ksnames: KubeSpawner 7.1's names for a user's objects (its claim), as variables (pure)
- events: which Events the hub's watch keeps, and how much of each (pure)
- serverobjects: a server's instance + token Secret, made and removed together (cancel-safe)
- stopping: delete an instance and wait for its pods, deleting them itself with no operator
- tokenshare: the server's token as two one-time-pad halves, across hub restarts (pure)

Only `spawner`, `cluster` and `namespaces` need `jupyterhub`/a cluster; nothing here imports the
controller or the engine, so a hub image needs no Pulumi SDK.
"""

from __future__ import annotations

__all__ = ["JupyternetesSpawner"]


def __getattr__(name: str):
    if name == "JupyternetesSpawner":
        from jupyternetes.spawner.spawner import JupyternetesSpawner
        return JupyternetesSpawner
    raise AttributeError(name)
