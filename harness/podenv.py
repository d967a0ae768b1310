"""A pod's container -> the local process the pod runner starts for it (pure, no I/O).

What a kubelet + container runtime would compute before starting a container, for the harness's
loopback node (`harness.podrunner`): the environment (`env` with literal values,
`$(VAR)` references, `valueFrom` secretKeyRef / configMapKeyRef / fieldRef, and `envFrom`), the
command line (the container's command and args with `$(VAR)` expanded; `jupyterhub-singleuser`
when it has no command, bound to the pod IP), and where the container's paths are on this
machine (volume mounts mapped to host directories, longest mount path first).

Secrets and ConfigMaps are looked up through callables, so this module never talks to the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# The notebook server the hub expects when a container names no command (like KubeSpawner's
# default `cmd`); jupyter docker-stacks images run their args through `tini --` the same way.
DEFAULT_COMMAND = "jupyterhub-singleuser"

# `name -> {key: decoded value}`, or None when the object does not exist.
Lookup = Callable[[str], Mapping[str, str] | None]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class ContainerConfigError(ValueError):
    """What a kubelet reports as CreateContainerConfigError: the message names the pod, the
    container and the missing Secret/ConfigMap/key, as `kubectl describe pod` would."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: a defined VAR is replaced, an undefined one stays as
    written, `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


def field_value(pod: Mapping[str, Any], path: str) -> str | None:
    """The downward API (`valueFrom.fieldRef.fieldPath`) for the fields a kubelet supports."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        value = simple[path]
        return "" if value is None else str(value)
    m = _FIELD_SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return None


def _key_ref(ref: Mapping[str, Any], kind: str, lookup: Lookup, namespace: str,
             where: str) -> str | None:
    name, key = ref.get("name", ""), ref.get("key", "")
    data = lookup(name)
    if data is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"{where}: {kind} {namespace}/{name!s} not found")
    if key not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"{where}: couldn't find key {key} in {kind} "
                                   f"{namespace}/{name}")
    return data[key]


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                  secrets: Lookup, configmaps: Lookup) -> dict[str, str]:
    """The container's environment as a kubelet builds it: `envFrom` sources in order (with
    their prefix; keys that are not valid variable names are skipped), then `env` entries,
    which win, each value `$(VAR)`-expanded against what is defined before it."""
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    where = f"pod {namespace}/{meta.get('name')} container {container.get('name')}"
    env: dict[str, str] = {}
    for index, source in enumerate(container.get("envFrom") or []):
        prefix = source.get("prefix") or ""
        for kind, field_name, lookup in (("ConfigMap", "configMapRef", configmaps),
                                         ("Secret", "secretRef", secrets)):
            ref = source.get(field_name)
            if ref is None:
                continue
            data = lookup(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f"{where}: envFrom[{index}]: {kind} "
                                           f"{namespace}/{ref.get('name')} not found")
            for key, value in data.items():
                if _ENV_NAME.match(prefix + key):
                    env[prefix + key] = value
    for index, var in enumerate(container.get("env") or []):
        name = var.get("name", "")
        at = f"{where}: env[{index}] ({name})"
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        value: str | None
        if "secretKeyRef" in source:
            value = _key_ref(source["secretKeyRef"], "Secret", secrets, namespace, at)
        elif "configMapKeyRef" in source:
            value = _key_ref(source["configMapKeyRef"], "ConfigMap", configmaps, namespace, at)
        elif "fieldRef" in source:
            path = (source["fieldRef"] or {}).get("fieldPath", "")
            value = field_value(pod, path)
            if value is None:
                raise ContainerConfigError(f"{at}: fieldRef {path!r} is not supported by the "
                                           "harness's pod runner")
        else:
            raise ContainerConfigError(f"{at}: valueFrom {sorted(source)} is not supported by "
                                       "the harness's pod runner (use value, secretKeyRef, "
                                       "configMapKeyRef or fieldRef)")
        if value is not None:
            env[name] = value
    return env


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args, `$(VAR)`-expanded. With no command: the args when they name a program,
    else `jupyterhub-singleuser` followed by them (KubeSpawner puts the command into args)."""
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if command:
        return command + args
    if args and not args[0].startswith("-"):
        return args
    return [DEFAULT_COMMAND, *args]


def is_singleuser(argv: Sequence[str]) -> bool:
    return bool(argv) and PurePosixPath(argv[0]).name == DEFAULT_COMMAND


def singleuser_flags(pod_ip: str, notebook_dir: Path, as_root: bool) -> list[str]:
    """Appended to a `jupyterhub-singleuser` command line (later flags win): listen on the pod's
    own IP (its JUPYTERHUB_SERVICE_URL usually says 0.0.0.0, which would take the port on every
    pod IP), serve the directory the notebook mount maps to, and run as root when the runner
    is root (the image would run as its own user)."""
    flags = [f"--ServerApp.ip={pod_ip}", f"--ServerApp.root_dir={notebook_dir}"]
    if as_root:
        flags.append("--allow-root")
    return flags


@dataclass(frozen=True)
class Mounts:
    """Container path -> host directory, for one container."""

    rootfs: Path  # where unmounted container paths live (the pod's own, thrown away with it)
    by_path: dict[str, Path] = field(default_factory=dict)
    claims: tuple[str, ...] = ()  # mount paths backed by a PersistentVolumeClaim, in order

    def host_path(self, container_path: str) -> Path:
        """The longest mount path containing `container_path` wins, as in a container."""
        path = PurePosixPath("/") / container_path
        for mount in sorted(self.by_path, key=lambda p: len(PurePosixPath(p).parts),
                            reverse=True):
            mount_path = PurePosixPath(mount)
            if path == mount_path or mount_path in path.parents:
                return self.by_path[mount].joinpath(*path.relative_to(mount_path).parts)
        return self.rootfs.joinpath(*path.parts[1:])


def container_mounts(pod: Mapping[str, Any], container: Mapping[str, Any], *, rootfs: Path,
                     claim_dir: Callable[[str], Path], empty_dir: Callable[[str], Path]
                     ) -> tuple[Mounts, list[str]]:
    """Host directories for the container's volumeMounts: a PVC's directory (outlives the pod),
    an emptyDir's (the pod's). Other volume kinds are not played; they come back as warnings."""
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    by_path: dict[str, Path] = {}
    claims: list[str] = []
    warnings: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name")) or {}
        path = str(PurePosixPath("/") / mount.get("mountPath", "/"))
        sub = mount.get("subPath") or ""
        if "persistentVolumeClaim" in volume:
            host = claim_dir(volume["persistentVolumeClaim"].get("claimName", ""))
            claims.append(path)
        elif "emptyDir" in volume:
            host = empty_dir(str(mount.get("name")))
        else:
            warnings.append(f"volume {mount.get('name')!r} at {path}: only persistentVolumeClaim "
                            "and emptyDir volumes are mapped by the pod runner; not mounted")
            continue
        by_path[path] = host / sub if sub else host
    return Mounts(rootfs=rootfs, by_path=by_path, claims=tuple(claims)), warnings


def working_dir(container: Mapping[str, Any], mounts: Mounts) -> Path:
    """The container's workingDir on the host; without one, the first PVC mount (a notebook
    image's home or work dir), else the rootfs."""
    if container.get("workingDir"):
        return mounts.host_path(str(container["workingDir"]))
    if mounts.claims:
        return mounts.host_path(mounts.claims[0])
    return mounts.rootfs

