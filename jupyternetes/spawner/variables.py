"""The variables a hub spawn puts on its instance, and the token Secret's data (pure).

Every value the hub hands a single-user server reaches the template as a `{placeholder}`: the
seed's seven names, `jupyterhub.server.name`, and every variable of `Spawner.get_env()` as
`jupyterhub.env.<NAME>`. Tokens never go into `spec.variables` (anyone who can read the instance
would see them): they go into the `<instance>-hub` Secret, whose keys the operator reads as
secret variables through `spec.variablesFrom`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jupyternetes.render import hubvars

# The Secret's keys: the seed's variable name; the env name, so a template may also mount the
# Secret with `envFrom` or `secretKeyRef` (`{jupyternetes.instance.name}-hub`); and the token env
# names as `jupyterhub.env.<NAME>`, so every get_env() variable is a placeholder (tokens only as
# Pulumi secrets, through `spec.variablesFrom`). get_env()'s token keys go into the Secret only,
# never into spec.variables.
SECRET_TOKEN_KEYS = (hubvars.API_TOKEN, hubvars.API_TOKEN_ENV,
                     *(hubvars.env_variable(key) for key in sorted(hubvars.TOKEN_ENV_NAMES)))


@dataclass(frozen=True)
class SpawnFacts:
    """What the hub knows about one spawn, as plain data."""

    user_name: str
    user_id: int
    server_name: str
    oauth_client_id: str
    hub_namespace: str
    instance_name: str
    instance_namespace: str


def builtin_variables(facts: SpawnFacts, env: Mapping[str, str]) -> dict[str, str]:
    """The spawner's own variables: seed names, server name, `jupyterhub.env.*` (no tokens)."""
    variables = {
        hubvars.NAMESPACE: facts.hub_namespace,
        hubvars.OAUTH_CLIENT_ID: facts.oauth_client_id,
        hubvars.USER_ID: str(facts.user_id),
        hubvars.USER_NAME: facts.user_name,
        hubvars.SERVER_NAME: facts.server_name,
        hubvars.INSTANCE_NAME: facts.instance_name,
        hubvars.INSTANCE_NAMESPACE: facts.instance_namespace,
    }
    for key, value in sorted(env.items()):
        if key in hubvars.TOKEN_ENV_NAMES or value is None:
            continue
        variables[hubvars.env_variable(key)] = str(value)
    return variables


def secret_data(token: str) -> dict[str, str]:
    """stringData of the `<instance>-hub` Secret: the same fresh token under every token key."""
    if not token:
        raise ValueError("the hub gave this spawn no API token (Spawner.api_token is empty)")
    return dict.fromkeys(SECRET_TOKEN_KEYS, token)


def reserved_names(builtins: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased name -> name of every variable an admin may not override."""
    names = {k.lower(): k for k in builtins}
    names.update({k.lower(): k for k in SECRET_TOKEN_KEYS})
    return names


def merge_variables(builtins: Mapping[str, str],
                    *layers: tuple[str, Mapping[str, object]]) -> dict[str, str]:
    """Built-ins plus the admin's layers (later layers win), e.g. `("extra_variables", {...})`.

    Names are case-insensitive in templates, so a layer may neither restate a built-in in any
    case nor add two names differing only in case; values are turned into strings (the CRD's
    `spec.variables` is a string map) and None is refused rather than silently sent as "None".
    """
    reserved = reserved_names(builtins)
    merged = dict(builtins)
    folded = {k.lower(): k for k in merged}
    for source, layer in layers:
        for key, value in (layer or {}).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{source}: variable names must be non-empty strings, "
                                 f"got {key!r}")
            if key.lower().startswith(hubvars.SPAWNER_PREFIX):
                raise ValueError(f"{source}: variable {key!r} is the spawner's "
                                 f"({hubvars.SPAWNER_PREFIX}*): set the trait on the spawner or "
                                 "in a kubespawner_override instead")
            if key.lower() in reserved:
                raise ValueError(f"{source}: variable {key!r} is set by the spawner "
                                 f"({reserved[key.lower()]}); choose another name")
            if value is None:
                raise ValueError(f"{source}: variable {key!r} has no value (None); give it a "
                                 "string")
            other = folded.get(key.lower())
            if other is not None and other != key:
                merged.pop(other)
            folded[key.lower()] = key
            merged[key] = value if isinstance(value, str) else _text(value)
    return merged


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
