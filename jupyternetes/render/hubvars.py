"""The variables JupyterHub's spawner gives every instance: names in one place, and placeholders.

The spawner (jupyternetes/spawner) sends these names in `spec.variables`; `jupyternetes lint`
renders a template with placeholder values for them, so a template that uses only these (and
the built-in `jupyternetes.*` names) renders for every user. Pure data, no imports of the hub.
"""

from __future__ import annotations

from jupyternetes.render.objects import INSTANCE_NAME, INSTANCE_NAMESPACE

# Every key JupyterHub 6.x `Spawner.get_env()` sets for every single-user server, whatever the
# hub's config; each is sent as the variable `jupyterhub.env.<NAME>` (tests/unit/test_hubvars.py
# compares this with the installed JupyterHub's get_env()). get_env() also sets keys only under
# some config (admin access, cookie options, resource limits, internal SSL, notebook_dir,
# default_url, debug, disable_user_config, env_keep, `environment`): the spawner sends those too
# when they are set, but they are not here because a template can't count on them for every user.
HUB_ENV_NAMES: tuple[str, ...] = (
    "JUPYTERHUB_API_TOKEN",
    "JPY_API_TOKEN",
    "JUPYTERHUB_CLIENT_ID",
    "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
    "JUPYTERHUB_HOST",
    "JUPYTERHUB_OAUTH_CALLBACK_URL",
    "JUPYTERHUB_OAUTH_SCOPES",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
    "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
    "JUPYTERHUB_USER",
    "JUPYTERHUB_SERVER_NAME",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_ACTIVITY_URL",
    "JUPYTERHUB_BASE_URL",
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_SERVICE_URL",
    "JUPYTERHUB_PUBLIC_URL",
    "JUPYTERHUB_PUBLIC_HUB_URL",
)
# The get_env() keys whose values are credentials (the hub API token, twice).
API_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
TOKEN_ENV_NAMES = frozenset({API_TOKEN_ENV, "JPY_API_TOKEN"})
ENV_PREFIX = "jupyterhub.env."

API_TOKEN = "jupyterhub.api_token"
NAMESPACE = "jupyterhub.namespace"
OAUTH_CLIENT_ID = "jupyterhub.oauth_client_id"
USER_ID = "jupyterhub.user.id"
USER_NAME = "jupyterhub.user.name"
SERVER_NAME = "jupyterhub.server.name"

# KubeSpawner's common traits, sent as `jupyterhub.spawner.<trait>` when set (on the spawner, or
# by a profile's or choice's `kubespawner_override`), so a KubeSpawner config keeps its meaning
# in a template that uses them. Kind: how the value is written (spawner/traitvars.py):
# text as given; number a JSON number of cores (`{...:number}`, and a Kubernetes quantity);
# bytes an integer of bytes parsed as KubeSpawner parses it (K/M/G/T are powers of 1024;
# `{...:int}`, and a quantity); map one variable per key, `jupyterhub.spawner.<trait>.<key>`
# (a key's characters outside letters, digits, `.`, `_`, `-` become `_`: `nvidia.com/gpu` ->
# `jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu`).
SPAWNER_PREFIX = "jupyterhub.spawner."
SPAWNER_TRAITS: dict[str, str] = {
    "image": "text",
    "cpu_limit": "number",
    "cpu_guarantee": "number",
    "mem_limit": "bytes",
    "mem_guarantee": "bytes",
    "extra_resource_limits": "map",
    "extra_resource_guarantees": "map",
    "node_selector": "map",
}
# get_env()'s keys that restate the resource traits: after a profile's override they carry the
# overridden value (as under KubeSpawner, whose overrides set the traits get_env() reads).
TRAIT_ENV_NAMES: dict[str, str] = {"mem_limit": "MEM_LIMIT", "mem_guarantee": "MEM_GUARANTEE",
                                   "cpu_limit": "CPU_LIMIT", "cpu_guarantee": "CPU_GUARANTEE"}


def spawner_variable(trait: str, key: str | None = None) -> str:
    return f"{SPAWNER_PREFIX}{trait}" + (f".{key}" if key is not None else "")


SAMPLE_USER = "jovyan"
SAMPLE_INSTANCE = "8dc366d8a0f05869bfdb6e7eb3d83f65"  # uuid5(NIL, "jovyan").hex style


def env_variable(name: str) -> str:
    return f"{ENV_PREFIX}{name}"


def sample_variables(instance_name: str = SAMPLE_INSTANCE, namespace: str = "default",
                     hub_namespace: str = "jupyterhub") -> dict[str, str]:
    """Placeholder values of every variable the spawner sends, shaped like real ones (a numeric
    user id, so a `{jupyterhub.user.id:int}` placeholder renders; URLs that parse)."""
    user = SAMPLE_USER
    prefix = f"/user/{user}/"
    hub_api = f"http://hub.{hub_namespace}.svc.cluster.local:8081/hub/api"
    env = {
        "JUPYTERHUB_API_TOKEN": "sample-api-token",
        "JPY_API_TOKEN": "sample-api-token",
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": f'["access:servers!server={user}/"]',
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": f'["access:servers!server={user}/"]',
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": "[]",
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_API_URL": hub_api,
        "JUPYTERHUB_ACTIVITY_URL": f"{hub_api}/users/{user}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{prefix}",
        "JUPYTERHUB_PUBLIC_URL": "",
        "JUPYTERHUB_PUBLIC_HUB_URL": "",
    }
    assert set(env) == set(HUB_ENV_NAMES)
    variables = {
        API_TOKEN: "sample-api-token",
        NAMESPACE: hub_namespace,
        OAUTH_CLIENT_ID: f"jupyterhub-user-{user}",
        USER_ID: "1",
        USER_NAME: user,
        SERVER_NAME: "",
        INSTANCE_NAME: instance_name,
        INSTANCE_NAMESPACE: namespace,
    }
    variables.update({env_variable(k): v for k, v in env.items()})
    return variables
