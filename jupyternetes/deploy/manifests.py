"""The deploy stack's objects other than RBAC, as plain manifests (pure).

The operator's container layout is the image's (Containerfile): `jupyternetes` on PATH, the
`pulumi` CLI beside it, the Kubernetes provider plugin under PLUGINS_DIR. The root filesystem is
read-only, so everything the engine writes goes to volumes: the state dir (a PVC for the file://
backend), PULUMI_HOME (an emptyDir whose `plugins` an init container links to the image's), /tmp.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from jupyternetes.crd.labels import USER_NAMESPACE_SELECTOR
from jupyternetes.deploy.rbac import OPERATOR
from jupyternetes.deploy.settings import DeploySettings

# Package data, so that an installed jupyternetes deploys without a checkout of the repository
# (the repository's examples/ link here). The example the install deploys is the hub template:
# the hub token reaches the pod through a secretKeyRef, never as a literal env value (the seed's
# template writes `{jupyterhub.api_token}` into env values, so it is not deployed).
EXAMPLE_TEMPLATE = Path(str(resources.files(__package__) / "examples" / "hub-template.yaml"))
# The spawner's default `template_name`: a hub configured with defaults finds the example.
EXAMPLE_TEMPLATE_NAME = "default-template"

STATE_DIR = "/var/lib/jupyternetes/state"
PULUMI_HOME = "/var/lib/jupyternetes/pulumi-home"
PLUGINS_DIR = "/opt/pulumi/plugins"
RUN_AS = 10001
HTTP_PORT_NAME = "http"

STATE_SECRET = f"{OPERATOR}-state"
STATE_PVC = f"{OPERATOR}-state"
PASSPHRASE_KEY = "passphrase"
# The shared backend's URL (it may carry a password: in the Secret and the environment the
# Pulumi CLI reads, never on the command line).
BACKEND_URL_KEY = "backendUrl"
BACKEND_SECRET = f"{OPERATOR}-backend"
METRICS_SERVICE = f"{OPERATOR}-metrics"
DISRUPTION_BUDGET = OPERATOR
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"

# Server-set fields the example files carry (they are `kubectl get -o yaml` output).
SERVER_SET_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation",
                     "managedFields", "selfLink", "deletionTimestamp")


def labels(component: str = "operator") -> dict[str, str]:
    # Not `app.kubernetes.io/managed-by: jupyternetes`: that label marks the objects the operator
    # itself manages (its pod watch selects on it), and the operator's own pod is not one.
    return {"app.kubernetes.io/name": "jupyternetes",
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "pulumi"}


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "jupyternetes", "app.kubernetes.io/component": "operator"}


def namespace(settings: DeploySettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": settings.namespace, "labels": labels()}}


def service_account(settings: DeploySettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR, "namespace": settings.namespace, "labels": labels()}}


def state_secret(settings: DeploySettings, passphrase: Any) -> dict[str, Any]:
    """The passphrase of every instance stack's secrets (`passphrase` may be a pulumi Output)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": STATE_SECRET, "namespace": settings.namespace,
                         "labels": labels()},
            "stringData": {PASSPHRASE_KEY: passphrase}}


def backend_secret(settings: DeploySettings, url: Any = None) -> dict[str, Any] | None:
    """The shared backend's URL (`url` may be a secret pulumi Output; default the setting);
    None with the file:// default. Its own Secret: the state Secret keeps its first value."""
    if not settings.state_backend_url:
        return None
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": BACKEND_SECRET, "namespace": settings.namespace,
                         "labels": labels()},
            "stringData": {BACKEND_URL_KEY: settings.state_backend_url if url is None else url}}


def pvc(settings: DeploySettings, name: str, namespace: str, storage: str,
        pvc_labels: dict[str, str]) -> dict[str, Any]:
    """A ReadWriteOnce claim of the install, in `stateStorageClass` when one is set."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": storage}}}
    if settings.state_storage_class:
        spec["storageClassName"] = settings.state_storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "labels": pvc_labels},
            "spec": spec}


def state_pvc(settings: DeploySettings) -> dict[str, Any] | None:
    """The file:// backend's volume; None with a remote backend."""
    if not settings.file_state:
        return None
    return pvc(settings, STATE_PVC, settings.namespace, settings.state_storage_size, labels())


def operator_args(settings: DeploySettings) -> list[str]:
    """`jupyternetes operator` flags (see jupyternetes/operator/run.py and stacks.py)."""
    args = ["operator",
            "--state-dir", STATE_DIR,
            "--pulumi-home", PULUMI_HOME,
            "--workers", str(settings.workers),
            "--template-rollout", settings.template_rollout,
            "--health-port", str(settings.metrics_port),
            "--metrics-port", str(settings.metrics_port),
            "--shutdown-grace", str(settings.shutdown_grace_seconds),
            "--log-level", settings.log_level,
            "--log-format", "json",
            # The operator refuses a file:// backend shared by several replicas.
            "--expected-replicas", str(max(settings.replicas, 1))]
    if settings.sharded:
        # Every replica active for the shards it holds (one Lease each); the count is the same
        # for all replicas. A change of the count rolls the pods safely: a replica does no work
        # while a live replica of another count runs (coordination/membership.py). The
        # replica's name in Leases, status and logs is its pod's name (the kubelet expands
        # $(POD_NAME) from the env below).
        args += ["--shards", str(settings.shards), "--replica-id", "$(POD_NAME)"]
    for ns in settings.watch_namespaces:
        args += ["--namespace", ns]
    if settings.hub_user_namespaces:
        args += ["--namespace-selector", USER_NAMESPACE_SELECTOR]
    for ns in settings.template_namespaces:
        args += ["--template-namespace", ns]
    for name in settings.secret_variables:
        args += ["--secret-variable", name]
    for kind in settings.other_resource_kinds:
        args += ["--other-resource-kind", kind.flag]
    if settings.allow_rbac_kinds:
        args += ["--allow-rbac-kinds"]
    return args


def spread_across_nodes() -> dict[str, Any]:
    """Preferred pod anti-affinity: replicas on different nodes when the cluster has them, so
    one node's loss stops only its share of the shards (preferred: a one-node cluster still
    runs every replica)."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100,
         "podAffinityTerm": {"labelSelector": {"matchLabels": selector_labels()},
                             "topologyKey": HOSTNAME_TOPOLOGY}}]}}


def disruption_budget(settings: DeploySettings) -> dict[str, Any] | None:
    """At most one replica drained at a time (node drains, cluster upgrades); None for a single
    replica, which a budget would only keep from ever being evicted."""
    if settings.replicas <= 1:
        return None
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": DISRUPTION_BUDGET, "namespace": settings.namespace,
                         "labels": labels()},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels()}}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
            "capabilities": {"drop": ["ALL"]}}


def deployment(settings: DeploySettings) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "PULUMI_CONFIG_PASSPHRASE",
         "valueFrom": {"secretKeyRef": {"name": STATE_SECRET, "key": PASSPHRASE_KEY}}},
        *([{"name": "PULUMI_BACKEND_URL",
             "valueFrom": {"secretKeyRef": {"name": BACKEND_SECRET, "key": BACKEND_URL_KEY}}}]
          if settings.state_backend_url else []),
        # Identity and home of this replica, for leader election Leases and Events.
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        # Nothing else in the root filesystem is writable.
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    container: dict[str, Any] = {
        "name": "operator",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["jupyternetes"],
        "args": operator_args(settings),
        "env": env,
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": settings.metrics_port}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": HTTP_PORT_NAME},
                          "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 5},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HTTP_PORT_NAME},
                           "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
        # Clearing stale stack locks at start may take a while; liveness must not kill that.
        "startupProbe": {"httpGet": {"path": "/healthz", "port": HTTP_PORT_NAME},
                         "periodSeconds": 5, "failureThreshold": 60, "timeoutSeconds": 5},
        "resources": copy.deepcopy(dict(settings.resources)),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "pulumi-home", "mountPath": PULUMI_HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if settings.state_backend_credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.state_backend_credentials_secret}}]
    # The engine writes workspaces and locks under PULUMI_HOME; the provider plugin is in the
    # read-only image, so an emptyDir PULUMI_HOME gets a link to it (no copy of ~100 MB).
    link_plugins = {
        "name": "pulumi-home",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["ln", "-sfn", PLUGINS_DIR, f"{PULUMI_HOME}/plugins"],
        "securityContext": _container_security(),
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "pulumi-home", "mountPath": PULUMI_HOME}],
    }
    state_volume: dict[str, Any] = (
        {"name": "state", "persistentVolumeClaim": {"claimName": STATE_PVC}}
        if settings.file_state else {"name": "state", "emptyDir": {}})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": OPERATOR, "namespace": settings.namespace, "labels": labels()},
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": selector_labels()},
            # Two operators must never write one file:// state: the old pod is gone before the
            # new one starts. A shared backend coordinates through Leases instead.
            "strategy": {"type": "Recreate"} if settings.file_state
            else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {**labels(), **selector_labels()}},
                "spec": {
                    "serviceAccountName": OPERATOR,
                    # Longer than one engine operation: SIGTERM lets in-flight `up`s finish
                    # (--shutdown-grace) before the kubelet's SIGKILL.
                    "terminationGracePeriodSeconds": settings.shutdown_grace_seconds + 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS,
                                        "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    **({"imagePullSecrets": [{"name": n} for n in settings.image_pull_secrets]}
                       if settings.image_pull_secrets else {}),
                    # A shared backend may run several replicas: spread them over nodes.
                    **({"affinity": spread_across_nodes()} if not settings.file_state else {}),
                    "initContainers": [link_plugins],
                    "containers": [container],
                    "volumes": [state_volume,
                                {"name": "pulumi-home", "emptyDir": {}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def metrics_service(settings: DeploySettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": METRICS_SERVICE, "namespace": settings.namespace,
                     "labels": labels(),
                     "annotations": {"prometheus.io/scrape": "true",
                                     "prometheus.io/port": str(settings.metrics_port),
                                     "prometheus.io/path": "/metrics"}},
        "spec": {"selector": selector_labels(),
                 "ports": [{"name": "metrics", "port": settings.metrics_port,
                            "targetPort": HTTP_PORT_NAME}]},
    }


def example_template(namespace_name: str, users: tuple[str, ...] = (),
                     path: Path = EXAMPLE_TEMPLATE) -> dict[str, Any]:
    """examples/hub-template.yaml as `default-template` in `namespace_name` (no server fields,
    no Helm ownership marks, our labels), usable from the namespaces `users` (its
    spec.allowedNamespaces; none: only its own namespace)."""
    obj = yaml.safe_load(path.read_text())
    obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for key in SERVER_SET_FIELDS:
        meta.pop(key, None)
    meta.pop("annotations", None)
    meta["name"] = EXAMPLE_TEMPLATE_NAME
    meta["namespace"] = namespace_name
    meta["labels"] = labels("example-template")
    spec = obj.setdefault("spec", {})
    spec.pop("allowedNamespaces", None)
    others = [ns for ns in users if ns != namespace_name]
    if others:
        spec["allowedNamespaces"] = sorted({namespace_name, *others})
    return obj


def example_users(settings: DeploySettings) -> tuple[str, ...]:
    """Who the example template is for: the hub's users' namespace, else the watched ones."""
    if settings.hub_user_namespaces:
        return ("*",)  # the namespaces are made at spawn time; the operator serves only them
    return (settings.hub_instance_namespace,) if settings.hub_enabled else (
        settings.watch_namespaces)
