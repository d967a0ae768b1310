"""The deploy stack's configuration: `pulumi config` values -> one validated `DeploySettings`.

Pure: `settings_from_config` takes a lookup function (the program passes `pulumi.Config.get_object`,
tests pass a dict's `get`), so every default and every error message is tested without an engine.
The defaults here are the ones documented in Pulumi.yaml's `config:` block; a unit test keeps the
two in step. Errors name the config key and say what to set instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jupyternetes.policy.rollout import ROLLOUTS

# The CLI's own choices (jupyternetes/operator/run.py); repeated here rather than imported so the
# deploy program does not pull the operator's runtime in, and checked equal by a unit test.
LOG_LEVELS = ("debug", "info", "warning", "error")

DEFAULT_IMAGE = "jupyternetes/operator:0.1.0"
# Shards of instances over the replicas (one coordination.k8s.io Lease each), with a shared
# backend. Fixed for the life of an install: every replica must use the same count, and a
# count well above any replica count keeps the split fair (32 shards over 3 replicas: 11/11/10).
DEFAULT_SHARDS = 32
MAX_SHARDS = 1024
DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}

# watchNamespaces: ["*"] = every namespace (ClusterRoles); unset = the hub's user namespace
# when a hub is configured, else every namespace.
ALL_NAMESPACES = "*"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")


class SettingsError(ValueError):
    """A config value the program cannot use; the message names the key and the fix."""


@dataclass(frozen=True)
class ResourceKind:
    """One kind of `otherResources` object the operator may manage: {apiGroup, resource} and,
    for a kind whose plural is not the regular one, `kind`. The same list is the operator's RBAC
    on those kinds and its allow-list (`--other-resource-kind`): a kind not listed is refused
    at render time (KindNotAllowed), before any engine call."""

    api_group: str
    resource: str
    kind: str = ""

    @property
    def flag(self) -> str:
        """The operator's `--other-resource-kind` value: RESOURCE[.GROUP] or Kind[.GROUP]."""
        name = self.kind or self.resource
        return f"{name}.{self.api_group}" if self.api_group else name


@dataclass(frozen=True)
class DeploySettings:
    namespace: str = "jupyternetes"
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    replicas: int = 1
    shards: int = DEFAULT_SHARDS
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    watch_namespaces: tuple[str, ...] = ()
    template_namespaces: tuple[str, ...] = ()
    template_rollout: str = "next-start"
    workers: int = 4
    secret_variables: tuple[str, ...] = ()
    other_resource_kinds: tuple[ResourceKind, ...] = ()
    allow_rbac_kinds: bool = False
    state_storage_size: str = "1Gi"
    state_storage_class: str = ""
    state_backend_url: str = ""
    state_backend_credentials_secret: str = ""
    log_level: str = "info"
    shutdown_grace_seconds: int = 120
    metrics_port: int = 8080
    hub_namespace: str = ""
    hub_service_account: str = "hub"
    hub_user_namespace: str = ""
    hub_user_namespaces: bool = False
    example_template_namespace: str = ""
    retain_crds: bool = True

    @property
    def file_state(self) -> bool:
        """True when the operator keeps its Pulumi state in a file:// backend on a PVC."""
        return not self.state_backend_url

    @property
    def sharded(self) -> bool:
        """True when the operator runs with `--shards`: a shared backend and shards > 0. With
        the file:// default there is one replica and the single-leader election of today."""
        return not self.file_state and self.shards > 0

    @property
    def cluster_wide(self) -> bool:
        return not self.watch_namespaces and not self.hub_user_namespaces

    @property
    def hub_enabled(self) -> bool:
        return bool(self.hub_namespace)

    @property
    def hub_instance_namespace(self) -> str:
        """Where the hub creates instances and their Secrets (the hub's own by default)."""
        return self.hub_user_namespace or self.hub_namespace


Lookup = Callable[[str], Any]


def settings_from_config(get: Lookup) -> DeploySettings:
    """Read every key with `get(key)` (None when unset) and validate it."""
    d = DeploySettings()
    s = DeploySettings(
        namespace=_dns_label(get, "namespace", d.namespace),
        image=_string(get, "image", d.image, required=True),
        image_pull_policy=_choice(get, "imagePullPolicy", d.image_pull_policy,
                                  ("Always", "IfNotPresent", "Never")),
        image_pull_secrets=_names(get, "imagePullSecrets"),
        replicas=_integer(get, "replicas", d.replicas, minimum=0),
        shards=_integer(get, "shards", d.shards, minimum=0, maximum=MAX_SHARDS),
        resources=_resources(get, d.resources),
        watch_namespaces=_watch_namespaces(get),
        template_namespaces=_dns_labels(get, "templateNamespaces"),
        template_rollout=_choice(get, "templateRollout", d.template_rollout, ROLLOUTS),
        workers=_integer(get, "workers", d.workers, minimum=1),
        secret_variables=_strings(get, "secretVariables"),
        other_resource_kinds=_resource_kinds(get),
        allow_rbac_kinds=_boolean(get, "allowRbacKinds", d.allow_rbac_kinds),
        state_storage_size=_quantity(get, "stateStorageSize", d.state_storage_size),
        state_storage_class=_string(get, "stateStorageClass", ""),
        state_backend_url=_string(get, "stateBackendUrl", ""),
        state_backend_credentials_secret=_dns_name(get, "stateBackendCredentialsSecret", ""),
        log_level=_choice(get, "logLevel", d.log_level, LOG_LEVELS),
        shutdown_grace_seconds=_integer(get, "shutdownGraceSeconds", d.shutdown_grace_seconds,
                                        minimum=1),
        metrics_port=_integer(get, "metricsPort", d.metrics_port, minimum=1, maximum=65535),
        hub_namespace=_dns_label(get, "hubNamespace", ""),
        hub_service_account=_dns_name(get, "hubServiceAccount", d.hub_service_account),
        hub_user_namespace=_dns_label(get, "hubUserNamespace", ""),
        hub_user_namespaces=_boolean(get, "hubUserNamespaces", d.hub_user_namespaces),
        example_template_namespace=_dns_label(get, "exampleTemplateNamespace", ""),
        retain_crds=_boolean(get, "retainCrds", d.retain_crds),
    )
    if s.hub_user_namespaces:
        if not s.hub_enabled:
            raise SettingsError("hubUserNamespaces: true needs hubNamespace (the hub that "
                                "creates the user namespaces); set it, or unset "
                                "hubUserNamespaces")
        if s.watch_namespaces or s.hub_user_namespace:
            raise SettingsError("hubUserNamespaces: true watches the labelled user namespaces "
                                "as the hub makes them; unset watchNamespaces and "
                                "hubUserNamespace")
        return _checked(s)
    if s.watch_namespaces == (ALL_NAMESPACES,):
        s = replace(s, watch_namespaces=())
    elif not s.watch_namespaces and s.hub_enabled:
        # Least privilege for the common case: the operator manages the hub's users' instances
        # and needs no rights anywhere else.
        s = replace(s, watch_namespaces=(s.hub_instance_namespace,))
    return _checked(s)


def _checked(s: DeploySettings) -> DeploySettings:
    """The checks of settings that do not depend on the watch mode."""
    if s.allow_rbac_kinds and not any(k.api_group == "rbac.authorization.k8s.io"
                                      for k in s.other_resource_kinds):
        raise SettingsError(
            "allowRbacKinds: true, but otherResourceKinds lists no kind of "
            "rbac.authorization.k8s.io; list the RBAC kinds templates may create (e.g. "
            "{apiGroup: rbac.authorization.k8s.io, resource: rolebindings}), or unset it")
    if s.file_state and s.replicas > 1:
        raise SettingsError(
            f"replicas: {s.replicas} operators cannot share one file:// state (each would "
            "write the same stacks); keep replicas at 1, or set stateBackendUrl to a shared "
            "Pulumi backend (postgres://, s3://, azblob://, gs://) with "
            "`pulumi config set --secret stateBackendUrl postgres://user:password@host:5432/db`")
    if s.sharded and s.replicas > s.shards:
        raise SettingsError(
            f"replicas: {s.replicas} is more than shards ({s.shards}): a replica beyond the "
            "shard count would hold no shard and do nothing; lower replicas, or raise shards "
            "(the same for every replica; changing it moves instances between replicas)")
    if s.state_backend_credentials_secret and s.file_state:
        raise SettingsError(
            "stateBackendCredentialsSecret is set but stateBackendUrl is not; the credentials "
            "are for a remote backend: set stateBackendUrl too, or unset the secret name")
    if s.state_backend_url.startswith("file:"):
        raise SettingsError(
            "stateBackendUrl: a file:// backend is the default (a PVC of stateStorageSize); "
            "leave stateBackendUrl unset for it")
    return s


# ---- typed readers: each error names the key --------------------------------------------------


def _string(get: Lookup, key: str, default: str, required: bool = False) -> str:
    value = get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise SettingsError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
    if required and not value.strip():
        raise SettingsError(f"{key}: must not be empty (default {default!r})")
    return value.strip()


def _choice(get: Lookup, key: str, default: str, choices: Sequence[str]) -> str:
    value = _string(get, key, default)
    if value not in choices:
        raise SettingsError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _dns_label(get: Lookup, key: str, default: str) -> str:
    value = _string(get, key, default)
    if value and not _DNS_LABEL.match(value):
        raise SettingsError(
            f"{key}: {value!r} is not a namespace name (lowercase letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)")
    return value


def _dns_name(get: Lookup, key: str, default: str) -> str:
    value = _string(get, key, default)
    if value and not all(_DNS_LABEL.match(part) for part in value.split(".")):
        raise SettingsError(f"{key}: {value!r} is not a valid Kubernetes object name")
    return value


def _integer(get: Lookup, key: str, default: int, minimum: int | None = None,
             maximum: int | None = None) -> int:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{key}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{key}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{key}: {value} is above the maximum {maximum}")
    return value


def _boolean(get: Lookup, key: str, default: bool) -> bool:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise SettingsError(f"{key}: expected true or false, got {value!r}")
    return value


def _list(get: Lookup, key: str) -> list[Any]:
    value = get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SettingsError(
            f"{key}: expected a list, got {value!r}; set items with "
            f"`pulumi config set --path '{key}[0]' VALUE`")
    return value


def _strings(get: Lookup, key: str) -> tuple[str, ...]:
    items = _list(get, key)
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise SettingsError(f"{key}[{index}]: expected a non-empty string, got {item!r}")
    return tuple(dict.fromkeys(items))


def _dns_labels(get: Lookup, key: str) -> tuple[str, ...]:
    names = _strings(get, key)
    for index, name in enumerate(names):
        if not _DNS_LABEL.match(name):
            raise SettingsError(f"{key}[{index}]: {name!r} is not a namespace name")
    return names


def _watch_namespaces(get: Lookup) -> tuple[str, ...]:
    if _strings(get, "watchNamespaces") == (ALL_NAMESPACES,):
        return (ALL_NAMESPACES,)
    return _dns_labels(get, "watchNamespaces")


def _names(get: Lookup, key: str) -> tuple[str, ...]:
    names = _strings(get, key)
    for index, name in enumerate(names):
        if not all(_DNS_LABEL.match(part) for part in name.split(".")):
            raise SettingsError(f"{key}[{index}]: {name!r} is not a valid Kubernetes object name")
    return names


def _quantity(get: Lookup, key: str, default: str) -> str:
    value = _string(get, key, default)
    if not _QUANTITY.match(value):
        raise SettingsError(f"{key}: {value!r} is not a Kubernetes quantity such as 1Gi or 500Mi")
    return value


def _resources(get: Lookup, default: Mapping[str, Mapping[str, str]]) -> Mapping[str, Any]:
    value = get("resources")
    if value is None:
        return default
    if not isinstance(value, dict) or set(value) - {"requests", "limits"}:
        raise SettingsError(
            f"resources: expected {{requests: {{cpu, memory}}, limits: {{cpu, memory}}}}, got "
            f"{value!r}")
    for part, amounts in value.items():
        if not isinstance(amounts, dict):
            raise SettingsError(f"resources.{part}: expected a map such as {{memory: 1Gi}}")
        for name, amount in amounts.items():
            if not isinstance(amount, str | int) or not _QUANTITY.match(str(amount)):
                raise SettingsError(f"resources.{part}.{name}: {amount!r} is not a quantity")
    # Merged over the defaults, so `--path resources.limits.memory 2Gi` keeps the requests.
    merged = {part: dict(amounts) for part, amounts in default.items()}
    for part, amounts in value.items():
        merged.setdefault(part, {}).update({k: str(v) for k, v in amounts.items()})
    return merged


def _resource_kinds(get: Lookup) -> tuple[ResourceKind, ...]:
    kinds: list[ResourceKind] = []
    for index, item in enumerate(_list(get, "otherResourceKinds")):
        where = f"otherResourceKinds[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("resource"), str) \
                or not item["resource"]:
            raise SettingsError(
                f"{where}: expected {{apiGroup: GROUP, resource: PLURAL}} (apiGroup \"\" for "
                f"the core group, e.g. {{apiGroup: \"\", resource: services}}), got {item!r}")
        group = item.get("apiGroup", "")
        if not isinstance(group, str):
            raise SettingsError(f"{where}.apiGroup: expected a string, got {group!r}")
        if item["resource"] in ("pods", "persistentvolumeclaims") and group == "":
            continue  # always granted
        if item["resource"] == "*" or group == "*":
            raise SettingsError(f"{where}: wildcards are not allowed; list each kind")
        kind = item.get("kind", "")
        if not isinstance(kind, str) or (kind and not re.fullmatch(r"[A-Z][A-Za-z0-9]*", kind)):
            raise SettingsError(f"{where}.kind: expected a kind such as ConfigMap (needed only "
                                f"when the plural is not the regular one), got {kind!r}")
        kinds.append(ResourceKind(group, item["resource"], kind))
    return tuple(dict.fromkeys(kinds))
