"""The JupyterHub the deploy stack installs with `hub.enabled: true`, laid out as zero-to-jupyterhub
lays it out (pure manifests).

- hub: Deployment `hub` (the hub image, tools/image/hub.sh: JupyterHub 6.1.1 + the jupyternetes
  spawner + jupyterhub-idle-culler), Service `hub` (8081), its ServiceAccount with the hub Role of
  rbac.hub_rbac, the hub database on PVC `hub-db-dir`, `jupyterhub_config.py` and the non-secret
  configuration in ConfigMap `hub`, the secrets (proxy token, cookie secret, the shared
  password) in Secret `hub`;
- proxy: Deployment `proxy` (configurable-http-proxy from the same image), Services `proxy-api`
  (8001, the hub's only) and `proxy-public` (80: where users log in; `proxy.service.type`);
- the idle culler as a hub service (`cull.enabled`, `cull.timeout`);
- NetworkPolicies like z2jh's: the hub takes connections from the proxy and the user servers
  only; the proxy's API only from the hub; user servers take connections from the proxy and the
  hub only and may reach the hub, cluster DNS and what `singleuser.networkPolicy.egress` adds
  (nothing else, so not the cloud metadata address and not another user's server).

`hub.config` is z2jh's: traitlets configuration by class, `{JupyterHub: {...},
JupyternetesSpawner: {...}}`, applied last (it wins over the defaults written here).
"""

from __future__ import annotations

import json
from typing import Any

from jupyternetes.deploy import manifests
from jupyternetes.deploy.settings import DeploySettings

HUB = "hub"
PROXY = "proxy"
PROXY_API = "proxy-api"
PROXY_PUBLIC = "proxy-public"
HUB_DB_PVC = "hub-db-dir"
HUB_PORT = 8081
PROXY_PORT = 8000
PROXY_API_PORT = 8001
SINGLEUSER_PORT = 8888
CONFIG_DIR = "/usr/local/etc/jupyterhub"
DB_DIR = "/srv/jupyterhub"
RUN_AS = 1000  # the hub image's user
# Secret `hub` keys (z2jh keeps the proxy token under the same name).
PROXY_TOKEN_KEY = "hub.config.ConfigurableHTTPProxy.auth_token"
COOKIE_SECRET_KEY = "hub.config.JupyterHub.cookie_secret"
PASSWORD_KEY = "hub.config.SharedPasswordAuthenticator.user_password"
# The label user servers carry (the operator puts it on every object it makes).
SINGLEUSER_SELECTOR = {"app.kubernetes.io/managed-by": "jupyternetes"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# The hub's jupyterhub_config.py: the deployment's facts from the environment and config.json,
# then `hub.config` over them.
JUPYTERHUB_CONFIG = '''\
# Written by the jupyternetes deploy stack (jupyternetes/deploy/hub.py); set `hub.config` instead
# of editing this file.
import json
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821
values = json.loads(Path(os.environ["HUB_CONFIG_JSON"]).read_text())
c.JupyterHub.hub_bind_url = "http://0.0.0.0:%d" % values["hubPort"]
c.JupyterHub.hub_connect_url = values["hubConnectUrl"]
c.JupyterHub.db_url = "sqlite:///%s/jupyterhub.sqlite" % values["dbDir"]
# The proxy is its own Deployment: the hub only talks to its API (token from the environment).
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = values["proxyApiUrl"]
# Servers outlive the hub on Kubernetes: a hub restart must find them, not stop them.
c.JupyterHub.cleanup_servers = False
c.JupyterHub.spawner_class = "jupyternetes"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["HUB_SHARED_PASSWORD"]
c.Authenticator.allow_all = True
for key, value in values["spawner"].items():
    setattr(c.JupyternetesSpawner, key, value)
if values.get("cullTimeout"):
    c.JupyterHub.services = [{
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                    "--timeout=%d" % values["cullTimeout"]],
    }]
    c.JupyterHub.load_roles = [{
        "name": "idle-culler", "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }]
for section, traits in values["config"].items():
    for key, value in traits.items():
        setattr(getattr(c, section), key, value)
'''


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "pulumi"}


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/component": component}


def hub_values(settings: DeploySettings, template_namespace: str, template_name: str,
               ) -> dict[str, Any]:
    """config.json of ConfigMap `hub`: what jupyterhub_config.py reads (no secrets)."""
    ns = settings.hub_namespace
    return {
        "hubPort": HUB_PORT,
        "hubConnectUrl": f"http://{HUB}.{ns}.svc.cluster.local:{HUB_PORT}",
        "proxyApiUrl": f"http://{PROXY_API}.{ns}.svc.cluster.local:{PROXY_API_PORT}",
        "dbDir": DB_DIR,
        "spawner": {"namespace": settings.hub_instance_namespace, "hub_namespace": ns,
                    "template_name": template_name, "template_namespace": template_namespace},
        "cullTimeout": settings.cull_timeout if settings.cull_enabled else 0,
        "config": dict(settings.hub_config),
    }


def service_account(settings: DeploySettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": settings.hub_service_account,
                         "namespace": settings.hub_namespace, "labels": labels(HUB)}}


def config_map(settings: DeploySettings, template_namespace: str, template_name: str,
               ) -> dict[str, Any]:
    values = hub_values(settings, template_namespace, template_name)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": HUB, "namespace": settings.hub_namespace, "labels": labels(HUB)},
            "data": {"jupyterhub_config.py": JUPYTERHUB_CONFIG,
                     "config.json": json.dumps(values, indent=2, sort_keys=True)}}


def secret(settings: DeploySettings, proxy_token: Any, cookie_secret: Any, password: Any,
           ) -> dict[str, Any]:
    """Secret `hub` (the values may be pulumi Outputs, kept from the first `up`)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": HUB, "namespace": settings.hub_namespace, "labels": labels(HUB)},
            "stringData": {PROXY_TOKEN_KEY: proxy_token, COOKIE_SECRET_KEY: cookie_secret,
                           PASSWORD_KEY: password}}


def db_pvc(settings: DeploySettings) -> dict[str, Any]:
    return manifests.pvc(settings, HUB_DB_PVC, settings.hub_namespace, settings.hub_db_storage,
                         labels(HUB))


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": HUB, "key": key}}}


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS, "capabilities": {"drop": ["ALL"]}}


def hub_deployment(settings: DeploySettings) -> dict[str, Any]:
    container = {
        "name": HUB, "image": settings.hub_image,
        "imagePullPolicy": settings.hub_image_pull_policy,
        "command": ["jupyterhub", "--config", f"{CONFIG_DIR}/jupyterhub_config.py"],
        "env": [{"name": "HUB_CONFIG_JSON", "value": f"{CONFIG_DIR}/config.json"},
                {"name": "POD_NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                _secret_env("CONFIGPROXY_AUTH_TOKEN", PROXY_TOKEN_KEY),
                _secret_env("JPY_COOKIE_SECRET", COOKIE_SECRET_KEY),
                _secret_env("HUB_SHARED_PASSWORD", PASSWORD_KEY)],
        "ports": [{"name": "http", "containerPort": HUB_PORT}],
        "readinessProbe": {"httpGet": {"path": "/hub/health", "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/hub/health", "port": "http"},
                          "initialDelaySeconds": 60, "periodSeconds": 20,
                          "failureThreshold": 6, "timeoutSeconds": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                      "limits": {"memory": "1Gi"}},
        "securityContext": _security(),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR},
                         {"name": "db", "mountPath": DB_DIR}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": HUB, "namespace": settings.hub_namespace, "labels": labels(HUB)},
        "spec": {
            "replicas": 1,
            # One hub writes the sqlite database: the old pod is gone before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(HUB)},
            "template": {
                "metadata": {"labels": {**labels(HUB), **selector(HUB)}},
                "spec": {
                    "serviceAccountName": settings.hub_service_account,
                    "securityContext": {"fsGroup": RUN_AS,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": HUB}},
                                {"name": "db",
                                 "persistentVolumeClaim": {"claimName": HUB_DB_PVC}}],
                },
            },
        },
    }


def proxy_deployment(settings: DeploySettings) -> dict[str, Any]:
    ns = settings.hub_namespace
    hub_url = f"http://{HUB}.{ns}.svc.cluster.local:{HUB_PORT}"
    container = {
        "name": "chp", "image": settings.hub_image,
        "imagePullPolicy": settings.hub_image_pull_policy,
        "command": ["configurable-http-proxy", "--ip=", f"--port={PROXY_PORT}",
                    "--api-ip=", f"--api-port={PROXY_API_PORT}",
                    f"--default-target={hub_url}", f"--error-target={hub_url}/hub/error"],
        "env": [_secret_env("CONFIGPROXY_AUTH_TOKEN", PROXY_TOKEN_KEY)],
        "ports": [{"name": "http", "containerPort": PROXY_PORT},
                  {"name": "api", "containerPort": PROXY_API_PORT}],
        "readinessProbe": {"httpGet": {"path": "/_chp_healthz", "port": "http"},
                           "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/_chp_healthz", "port": "http"},
                          "initialDelaySeconds": 30, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"memory": "512Mi"}},
        "securityContext": {**_security(), "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": PROXY, "namespace": ns, "labels": labels(PROXY)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(PROXY)},
            "template": {
                "metadata": {"labels": {**labels(PROXY), **selector(PROXY)}},
                "spec": {"automountServiceAccountToken": False,
                         "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [container]},
            },
        },
    }


def _service(settings: DeploySettings, name: str, component: str, port: int, target: str,
             service_type: str = "ClusterIP") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": settings.hub_namespace,
                         "labels": labels(component)},
            "spec": {"type": service_type, "selector": selector(component),
                     "ports": [{"name": target, "port": port, "targetPort": target}]}}


def services(settings: DeploySettings) -> dict[str, dict[str, Any]]:
    return {
        HUB: _service(settings, HUB, HUB, HUB_PORT, "http"),
        PROXY_API: _service(settings, PROXY_API, PROXY, PROXY_API_PORT, "api"),
        PROXY_PUBLIC: _service(settings, PROXY_PUBLIC, PROXY, 80, "http",
                               settings.proxy_service_type),
    }


def _pods_of(component: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": selector(component)}}


def _singleuser_peer(settings: DeploySettings) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": SINGLEUSER_SELECTOR},
            "namespaceSelector": {"matchLabels": {
                NAMESPACE_NAME_LABEL: settings.hub_instance_namespace}}}


def _policy(name: str, namespace: str, pods: dict[str, Any], ingress: list[dict[str, Any]],
            egress: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress}
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
            "spec": spec}


DNS_EGRESS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def network_policies(settings: DeploySettings) -> dict[str, dict[str, Any]]:
    """z2jh's three policies. The hub and the proxy keep their egress open (the hub talks to
    the apiserver, the proxy to every user server); user servers get only the hub, DNS and
    `singleuser.networkPolicy.egress`."""
    ns = settings.hub_namespace
    hub_peer_of_users = {**_pods_of(HUB),
                         "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
    proxy_peer = {**_pods_of(PROXY),
                  "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
    return {
        HUB: _policy(HUB, ns, {"matchLabels": selector(HUB)}, [
            {"ports": [{"port": "http"}],
             "from": [_pods_of(PROXY), _singleuser_peer(settings)]}], None),
        PROXY: _policy(PROXY, ns, {"matchLabels": selector(PROXY)}, [
            {"ports": [{"port": "http"}]},  # proxy-public: anyone
            {"ports": [{"port": "api"}], "from": [_pods_of(HUB)]}], None),
        "singleuser": _policy("singleuser", settings.hub_instance_namespace,
                              {"matchLabels": SINGLEUSER_SELECTOR}, [
            {"ports": [{"port": SINGLEUSER_PORT}], "from": [proxy_peer, hub_peer_of_users]}], [
            {"ports": [{"port": HUB_PORT}], "to": [hub_peer_of_users]},
            DNS_EGRESS,
            *settings.singleuser_egress]),
    }


def example_template_image(template: dict[str, Any], settings: DeploySettings) -> dict[str, Any]:
    """The example template with `singleuser.image` (when set) in its notebook container."""
    if not settings.singleuser_image:
        return template
    for pod in template.get("spec", {}).get("pods", []):
        for container in pod.get("spec", {}).get("containers", []):
            container["image"] = settings.singleuser_image
            container["imagePullPolicy"] = settings.singleuser_image_pull_policy
    return template
