"""`jupyternetes migrate-kubespawner VALUES.yaml`: a z2jh `singleuser` block as a template.

Reads a zero-to-jupyterhub values file (or only its `singleuser` block) and prints a
JupyterNotebookTemplate that gives each user what KubeSpawner gave them: the image, command,
cpu/memory limits and guarantees, extra resources, uid/fsGid, node selector, tolerations,
labels, annotations, extra env, volumes, init and extra containers, service account, and the
user's home claim under KubeSpawner's own claim name with the
`jupyternetes.kadense.io/kubespawner-claim` annotation, so the user's first Jupyternetes server
adopts the claim KubeSpawner made for them (data and owner kept; policy/ownership.py). Settings
with no template equivalent are listed on stderr with what to do instead (`notes`), never
dropped silently.

Pure mapping (`template_from_singleuser`) plus a thin command.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Mapping
from typing import Any

from jupyternetes.crd.definitions import API_VERSION, TEMPLATE_KIND
from jupyternetes.crd.labels import KUBESPAWNER_CLAIM
from jupyternetes.crd.naming import is_dns1123_label
from jupyternetes.spawner.ksnames import PREFIX as KS_PREFIX

# z2jh's own defaults for the keys read here (jupyterhub/values.yaml, chart 4.x).
DEFAULT_IMAGE = "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"
DEFAULT_CMD = ["jupyterhub-singleuser"]
DEFAULT_UID, DEFAULT_FS_GID = 1000, 100
DEFAULT_CAPACITY = "10Gi"
DEFAULT_HOME = "/home/jovyan"
# KubeSpawner 7 (z2jh 4): claim-{user_server}; before (z2jh 3): claim-{username}{servername}.
DEFAULT_PVC_NAME_TEMPLATE = "claim-{user_server}"
# What the hub hands a server (Spawner.get_env), as the spawner's `jupyterhub.env.*` variables.
HUB_ENV = ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL", "JUPYTERHUB_BASE_URL",
           "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_HOST", "JUPYTERHUB_OAUTH_CALLBACK_URL",
           "JUPYTERHUB_OAUTH_SCOPES", "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
           "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
           "JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_SERVICE_PREFIX",
           "JUPYTERHUB_SERVICE_URL")
# KubeSpawner's name fields -> the spawner's variables, per slug scheme.
KS_FIELDS = {
    "safe": {"username": "username", "servername": "servername",
             "user_server": "user_server"},
    "escape": {"username": "escaped_username", "servername": "escaped_servername",
               "user_server": "escaped_user_server"},
}
KS_FIELDS_ANY = ("escaped_username", "escaped_servername", "escaped_user_server",
                 "safe_username", "safe_servername", "safe_user_server")
# Keys of `singleuser` that belong to the spawner's or the hub's configuration, not a template.
NOT_TEMPLATE = {
    "profileList": "set the spawner's profile_list (each profile a template)",
    "startTimeout": "set c.JupyternetesSpawner.start_timeout",
    "networkPolicy": "keep z2jh's NetworkPolicy objects, or add one to otherResources",
    "defaultUrl": "set c.Spawner.default_url",
    "events": "the spawner always reports the instance's and pod's events",
    "allowPrivilegeEscalation": "set securityContext in the pod entry",
    "cloudMetadata": "keep z2jh's cloud metadata NetworkPolicy",
}


class MigrationError(ValueError):
    """A values file that cannot be mapped; the message names the key."""


def singleuser_block(values: Any) -> Mapping[str, Any]:
    """The `singleuser` block of a values file, or the file itself when it is the block."""
    if not isinstance(values, Mapping):
        raise MigrationError(f"expected a YAML mapping (a z2jh values file or its singleuser "
                             f"block), got {type(values).__name__}")
    block = values.get("singleuser", values)
    if not isinstance(block, Mapping):
        raise MigrationError("singleuser: expected a mapping")
    return block


def claim_name_template(ks_template: str, scheme: str) -> str:
    """KubeSpawner's pvc_name_template with its fields as the spawner's variables."""
    names = KS_FIELDS[scheme]

    def field(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in names:
            return "{" + KS_PREFIX + names[key] + "}"
        if key in KS_FIELDS_ANY:
            return "{" + KS_PREFIX + key.replace("safe_", "") + "}"
        raise MigrationError(f"singleuser.storage.dynamic.pvcNameTemplate: field {{{key}}} "
                             "has no Jupyternetes variable; use {username}, {servername} or "
                             "{user_server}")

    # KubeSpawner strips the '-' a template's empty {servername} leaves at the end.
    return re.sub(r"\{([A-Za-z_]+)\}", field, ks_template)


def _quantities(section: Mapping[str, Any], kind: str, requests: dict, limits: dict) -> None:
    if section.get("limit") is not None:
        limits[kind] = str(section["limit"])
    if section.get("guarantee") is not None:
        requests[kind] = str(section["guarantee"])


def _env(extra: Any, notes: list[str]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "JUPYTERHUB_API_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "{jupyternetes.instance.name}-hub", "key": "JUPYTERHUB_API_TOKEN"}}},
        *({"name": name, "value": "{jupyterhub.env." + name + "}"} for name in HUB_ENV),
        {"name": "JUPYTERHUB_SERVER_NAME", "value": "{jupyterhub.server.name}"},
        {"name": "JUPYTERHUB_USER", "value": "{jupyterhub.user.name}"},
    ]
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            if isinstance(value, Mapping):
                env.append({"name": str(name), **copy.deepcopy(dict(value))})
            else:
                env.append({"name": str(name), "value": _ks_text(str(value), notes)})
    elif isinstance(extra, list):
        env += copy.deepcopy(extra)
    elif extra is not None:
        raise MigrationError("singleuser.extraEnv: expected a mapping or a list")
    return env


def _ks_text(value: str, notes: list[str]) -> str:
    """KubeSpawner expands {username} & co in env values: as the spawner's variables; other
    braces are literal in a template only when doubled."""
    def field(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "username":
            return "{jupyterhub.user.name}"
        if key == "servername":
            return "{jupyterhub.server.name}"
        return "{{" + key + "}}"

    return re.sub(r"\{([A-Za-z_]+)\}", field, value)


def template_from_singleuser(block: Mapping[str, Any], name: str = "kubespawner",
                             namespace: str | None = None,
                             allowed_namespaces: tuple[str, ...] = (),
                             scheme: str = "safe") -> tuple[dict[str, Any], list[str]]:
    """(the template, notes on what was not mapped)."""
    if scheme not in KS_FIELDS:
        raise MigrationError(f"slug scheme {scheme!r}: use 'safe' (KubeSpawner 7, z2jh 4) or "
                             "'escape' (earlier)")
    if not is_dns1123_label(name):
        raise MigrationError(f"template name {name!r} is not a DNS-1123 label")
    notes: list[str] = []
    image = block.get("image") or {}
    image_ref = (f"{image.get('name')}:{image.get('tag')}" if image.get("name")
                 else DEFAULT_IMAGE)
    cmd = block.get("cmd", DEFAULT_CMD)
    command = [cmd] if isinstance(cmd, str) else list(cmd or DEFAULT_CMD)
    container: dict[str, Any] = {
        "name": "notebook", "image": image_ref, "command": command,
        "ports": [{"containerPort": 8888, "name": "http", "protocol": "TCP"}],
        "env": _env(block.get("extraEnv"), notes),
    }
    if image.get("pullPolicy"):
        container["imagePullPolicy"] = image["pullPolicy"]
    if block.get("workingDir"):
        container["workingDir"] = block["workingDir"]
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    _quantities(block.get("cpu") or {}, "cpu", requests, limits)
    _quantities(block.get("memory") or {}, "memory", requests, limits)
    extra = block.get("extraResource") or {}
    limits.update({k: str(v) for k, v in (extra.get("limits") or {}).items()})
    requests.update({k: str(v) for k, v in (extra.get("guarantees") or {}).items()})
    if requests or limits:
        container["resources"] = {k: v for k, v in (("requests", requests),
                                                    ("limits", limits)) if v}
    if block.get("lifecycleHooks"):
        container["lifecycle"] = copy.deepcopy(block["lifecycleHooks"])
    uid = block.get("uid", DEFAULT_UID)
    fs_gid = block.get("fsGid", DEFAULT_FS_GID)
    pod: dict[str, Any] = {"containers": [container]}
    security: dict[str, Any] = {}
    if uid is not None:
        security["runAsUser"] = int(uid)
    if fs_gid is not None:
        security["fsGroup"] = int(fs_gid)
    if security:
        pod["securityContext"] = security
    for key, field in (("nodeSelector", "nodeSelector"), ("extraTolerations", "tolerations"),
                       ("serviceAccountName", "serviceAccountName"),
                       ("initContainers", "initContainers"),
                       ("extraNodeAffinity", None), ("extraPodConfig", None)):
        value = block.get(key)
        if not value:
            continue
        if field is None:
            notes.append(f"singleuser.{key}: merge it into the pod entry's spec by hand "
                         "(affinity / extra pod fields)")
            continue
        pod[field] = copy.deepcopy(value)
    if block.get("extraContainers"):
        pod["containers"] += copy.deepcopy(block["extraContainers"])
    pull_secrets = [s if isinstance(s, Mapping) else {"name": s}
                    for s in (image.get("pullSecrets") or [])]
    if pull_secrets:
        pod["imagePullSecrets"] = pull_secrets
    storage = block.get("storage") or {}
    volumes = copy.deepcopy(list(storage.get("extraVolumes") or []))
    mounts = copy.deepcopy(list(storage.get("extraVolumeMounts") or []))
    pvcs: list[dict[str, Any]] = []
    storage_type = storage.get("type", "dynamic")
    if storage_type == "dynamic":
        dynamic = storage.get("dynamic") or {}
        claim_name = claim_name_template(dynamic.get("pvcNameTemplate")
                                         or DEFAULT_PVC_NAME_TEMPLATE, scheme)
        spec: dict[str, Any] = {
            "accessModes": list(dynamic.get("storageAccessModes") or ["ReadWriteOnce"]),
            "resources": {"requests": {"storage": str(storage.get("capacity")
                                                      or DEFAULT_CAPACITY)}}}
        if dynamic.get("storageClass"):
            spec["storageClassName"] = dynamic["storageClass"]
        pvcs.append({"name": "home", "annotations": {KUBESPAWNER_CLAIM: claim_name},
                     "spec": spec})
        volumes.insert(0, {"name": "home", "persistentVolumeClaim": {
            "claimName": "{jupyternetes.pvcs.home}"}})
        mounts.insert(0, {"name": "home",
                          "mountPath": storage.get("homeMountPath") or DEFAULT_HOME})
    elif storage_type == "static":
        static = storage.get("static") or {}
        notes.append("singleuser.storage.type static: the shared claim "
                     f"{static.get('pvcName')!r} is mounted as it is (not managed)")
        volumes.insert(0, {"name": "home", "persistentVolumeClaim": {
            "claimName": str(static.get("pvcName"))}})
        mounts.insert(0, {"name": "home", "mountPath": storage.get("homeMountPath")
                          or DEFAULT_HOME, "subPath": _ks_text(str(static.get(
                              "subPath") or "{username}"), notes)})
    elif storage_type not in ("none", None):
        raise MigrationError(f"singleuser.storage.type {storage_type!r}: expected dynamic, "
                             "static or none")
    if volumes:
        pod["volumes"] = volumes
    if mounts:
        container["volumeMounts"] = mounts
    pod_entry: dict[str, Any] = {"name": "notebook", "spec": pod}
    if block.get("extraLabels"):
        pod_entry["labels"] = {str(k): str(v) for k, v in block["extraLabels"].items()}
    if block.get("extraAnnotations"):
        pod_entry["annotations"] = {str(k): str(v)
                                    for k, v in block["extraAnnotations"].items()}
    for key, why in NOT_TEMPLATE.items():
        if block.get(key) not in (None, {}, [], ""):
            notes.append(f"singleuser.{key}: not part of a template; {why}")
    known = {"image", "cmd", "extraEnv", "workingDir", "cpu", "memory", "extraResource",
             "lifecycleHooks", "uid", "fsGid", "nodeSelector", "extraTolerations",
             "serviceAccountName", "initContainers", "extraNodeAffinity", "extraPodConfig",
             "extraContainers", "storage", "extraLabels", "extraAnnotations", *NOT_TEMPLATE}
    for key in sorted(set(block) - known):
        notes.append(f"singleuser.{key}: not mapped; add it to the template by hand if it "
                     "matters")
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    spec_out: dict[str, Any] = {"pods": [pod_entry]}
    if pvcs:
        spec_out["pvcs"] = pvcs
    if allowed_namespaces:
        spec_out["allowedNamespaces"] = list(allowed_namespaces)
    return {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND, "metadata": metadata,
            "spec": spec_out}, notes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate-kubespawner", help="map a z2jh singleuser values block to a template",
        description="Print a JupyterNotebookTemplate made from a zero-to-jupyterhub values "
                    "file's singleuser block; its home claim adopts the user's KubeSpawner "
                    "claim. Unmapped settings are listed on stderr.")
    parser.add_argument("values", help="values.yaml (or only its singleuser block; - = stdin)")
    parser.add_argument("--name", default="kubespawner", help="template name")
    parser.add_argument("--namespace", default=None, help="template namespace")
    parser.add_argument("--allowed-namespace", action="append", default=[], metavar="NS",
                        help="spec.allowedNamespaces entry (repeatable; '*' = any)")
    parser.add_argument("--slug-scheme", choices=tuple(KS_FIELDS), default="safe",
                        help="KubeSpawner's slug_scheme that named the claims: safe "
                             "(KubeSpawner 7, z2jh 4; default) or escape (earlier)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jupyternetes.app.cli import InputError, dump, load_document

    try:
        values, _ = load_document(args.values, "values")
        template, notes = template_from_singleuser(
            singleuser_block(values), args.name, args.namespace,
            tuple(args.allowed_namespace), args.slug_scheme)
    except (InputError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dump([template], "yaml"))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
