"""The Pulumi inline program of one instance stack: rendered objects -> Kubernetes resources.

Runs inside a Pulumi deployment (the stack worker, or `pulumi.runtime.set_mocks` in unit tests).
PVCs are declared first, pods depend on them, other objects follow. Every object is declared as a
raw `pulumi.CustomResource` whose type token is derived from apiVersion/kind, with the manifest
passed through untouched (camelCase keys and all): the Kubernetes provider reads the live
object's schema by its group/version/kind, so one code path serves built-in kinds and CRDs alike,
and no Python input-type translation can rename a field.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as kubernetes

from jupyternetes.engine import applied
from jupyternetes.engine import settings as engine_settings
from jupyternetes.kube.objects import ObjectReader
from jupyternetes.policy import ownership

GROUP_ORDER = ("pvcs", "pods", "otherResources")

# The provider plugin version a raw CustomResource asks for: the installed pulumi-kubernetes SDK's
# own, the plugin its typed resources ask for (tests/unit/test_deploy.py compares the two).
# pyproject pins an exact release, whose PEP 440 version is also its semver.
KUBERNETES_PROVIDER_VERSION = importlib.metadata.version("pulumi-kubernetes")

CREATE_GUARD_HOOK = "jupyternetes-create-guard"
# How long a replacement pod waits for its predecessor (same name) to finish terminating:
# longer than the usual 30 s grace period, short enough to free the engine worker.
TERMINATION_WAIT_SECONDS = 300.0

# The stack output the operator reads: a list of {group, entry, apiVersion, kind, name,
# namespace, uid} dicts, one per object.
OBJECTS_OUTPUT = "objects"

PROVIDER_NAME = "kubernetes"


class ProgramError(ValueError):
    """Rendered input the program cannot declare (a bug upstream, not an engine failure)."""


@dataclass(frozen=True)
class ObjectSpec:
    """One rendered object as the program needs it: where it came from and its manifest."""

    group: str
    entry: str
    manifest: Mapping[str, Any]

    @property
    def resource_name(self) -> str:
        # Stable per entry: the URN must not change when a variable (and so a name) changes,
        # otherwise Pulumi would see a delete + create of two unrelated resources.
        return f"{self.group}/{self.entry}"


def as_object_specs(objects: Iterable[Any]) -> list[ObjectSpec]:
    """Normalise render.RenderedObject instances or `{group, entry, manifest}` dicts."""
    specs: list[ObjectSpec] = []
    seen: set[str] = set()
    for obj in objects:
        if isinstance(obj, Mapping):
            group, entry, manifest = obj.get("group"), obj.get("entry"), obj.get("manifest")
        else:
            group, entry, manifest = obj.group, obj.entry, obj.manifest
        if group not in GROUP_ORDER:
            raise ProgramError(f"object group {group!r} is not one of {', '.join(GROUP_ORDER)}")
        if not isinstance(entry, str) or not entry:
            raise ProgramError(f"object in group {group} has no entry name")
        if not isinstance(manifest, Mapping):
            raise ProgramError(f"{group}/{entry}: manifest must be an object")
        for field in ("apiVersion", "kind"):
            if not isinstance(manifest.get(field), str) or not manifest.get(field):
                raise ProgramError(f"{group}/{entry}: manifest.{field} is missing")
        metadata = manifest.get("metadata")
        if not isinstance(metadata, Mapping) or not metadata.get("name"):
            raise ProgramError(f"{group}/{entry}: manifest.metadata.name is missing")
        spec = ObjectSpec(group, entry, manifest)
        if spec.resource_name in seen:
            raise ProgramError(f"{spec.resource_name} appears twice")
        seen.add(spec.resource_name)
        specs.append(spec)
    # Declaration order is part of the contract (PVCs, pods, others); keep input order within.
    return sorted(specs, key=lambda s: GROUP_ORDER.index(s.group))


def type_token(api_version: str, kind: str) -> str:
    """`kubernetes:<group>/<version>:<kind>`, the provider's token (core group is `core`)."""
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{kind}"


def contains_secret(value: str, secret_values: Collection[str]) -> bool:
    return any(secret and secret in value for secret in secret_values)


def secret_paths(value: Any, secret_values: Collection[str], path: str = "") -> list[str]:
    """Paths of the string leaves (and mapping keys) that hold a secret value, for tests/logs."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and contains_secret(key, secret_values):
                found.append(child)
            found.extend(secret_paths(item, secret_values, child))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(secret_paths(item, secret_values, f"{path}[{index}]"))
    elif isinstance(value, str) and contains_secret(value, secret_values):
        found.append(path)
    return found


def wrap_secrets(value: Any, secret_values: Collection[str]) -> Any:
    """`value` with every string leaf that contains a secret replaced by `Output.secret(leaf)`.

    Only the leaf becomes secret, so the rest of the object stays readable in diffs and state.
    Substring match: a token is often embedded (`Authorization: token <x>`, a URL). A mapping
    whose *key* contains a secret cannot be wrapped per key, so the whole mapping is wrapped.
    """
    if not secret_values:
        return value
    if isinstance(value, Mapping):
        if any(isinstance(k, str) and contains_secret(k, secret_values) for k in value):
            return pulumi.Output.secret(dict(value))
        return {k: wrap_secrets(v, secret_values) for k, v in value.items()}
    if isinstance(value, list):
        return [wrap_secrets(item, secret_values) for item in value]
    if isinstance(value, str) and contains_secret(value, secret_values):
        return pulumi.Output.secret(value)
    return value


async def wait_until_gone(read: Callable[[], Mapping[str, Any] | None], what: str,
                          timeout: float = TERMINATION_WAIT_SECONDS, interval: float = 0.5,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                          ) -> Mapping[str, Any] | None:
    """Return once `read()` finds no object, or one that is not terminating (what it read:
    None or that object); raise on timeout.

    `read` is a blocking API call (run in a thread so the program's event loop keeps serving
    other resources). An existing object that is *not* being deleted is left alone: creating
    over it is an adoption, which the create guard allows only for the instance's own objects.
    """
    deadline = clock() + timeout
    while True:
        live = await asyncio.to_thread(read)
        if live is None or not (live.get("metadata") or {}).get("deletionTimestamp"):
            return live
        if clock() >= deadline:
            raise TimeoutError(
                f"{what} is still terminating after {timeout:.0f}s, so its replacement (same "
                "name) cannot be created yet; the next reconcile retries")
        await sleep(interval)


@functools.lru_cache(maxsize=4)
def _object_reader(kubeconfig: str | None, context: str | None) -> ObjectReader:
    from kubernetes import config

    if kubeconfig or context:
        return ObjectReader(config.new_client_from_config(config_file=kubeconfig,
                                                                    context=context))
    try:
        return ObjectReader(config.new_client_from_config())
    except config.ConfigException:
        from kubernetes import client

        config.load_incluster_config()
        return ObjectReader(client.ApiClient())


def object_reader(kubeconfig: str | None, context: str | None, api_version: str, kind: str,
                  namespace: str, name: str) -> Callable[[], Mapping[str, Any] | None]:
    def read() -> Mapping[str, Any] | None:
        return _object_reader(kubeconfig, context).get(api_version, kind, namespace, name)

    return read


async def guard_create(read: Callable[[], Mapping[str, Any] | None], api_version: str,
                       kind: str, ref: str, instance: tuple[str, str] | None,
                       what: str = "", account: str | None = None,
                       claimant: tuple[str, str] | None = None) -> None:
    """Raise ProgramError when the object about to be created exists and is another's; for a
    pod, first wait until a terminating predecessor of the same name is gone."""
    live: Mapping[str, Any] | None = None
    if (api_version, kind) == ("v1", "Pod"):
        # Its last read is the object as it is now: judged below without reading it again.
        live = await wait_until_gone(read, f"the old pod {ref}")
    elif instance is not None:
        live = await asyncio.to_thread(read)
    if instance is None:
        return
    found = ownership.conflict(live, instance[0], instance[1], what, account, claimant)
    if found is not None:
        raise ProgramError(found.message)


# What a create guard reads: (apiVersion, kind, namespace, name, account label or None,
# KubeSpawner claimant or None) by resource name (`pvcs/x`).
Target = tuple[str, str, str, str, str | None, tuple[str, str] | None]
Targets = Mapping[str, Target]


def guard_targets(specs: Iterable[ObjectSpec]) -> dict[str, Target]:
    """From our own manifests, not from the hook's inputs: those hold secret Outputs wherever a
    secret value sits (labels included), so their metadata cannot be read as plain data."""
    targets = {}
    for spec in specs:
        meta = spec.manifest["metadata"]
        targets[spec.resource_name] = (spec.manifest["apiVersion"], spec.manifest["kind"],
                                       meta.get("namespace") or "default", meta["name"],
                                       ownership.account_of(spec.manifest),
                                       ownership.kubespawner_request(spec.manifest))
    return targets


def create_guard_hook(kubeconfig: str | None, context: str | None,
                      instance: tuple[str, str] | None,
                      targets: Targets) -> pulumi.ResourceHook:
    """before_create hook of every object: never create over another instance's object.

    The engine's create is a server-side apply, which would upsert onto an object that already
    has the name; this is where an object made after the operator's own check is caught (see
    jupyternetes.policy.ownership). For pods it first waits until a terminating pod of the same name
    is gone: pulumi-kubernetes skips the *deletion* await of a Pod marked skipAwait (legacy
    behaviour it keeps for Pod), so when a changed spec replaces a pod, the delete returns while
    the old pod is still terminating and the create would be applied onto it.
    `instance`: (namespace, name) of the stack's instance; None checks nothing but the wait.
    """

    async def before_create(args: pulumi.ResourceHookArgs) -> None:
        target = targets.get(args.name)
        if target is None:
            raise ProgramError(f"create guard: {args.name} is not an object of this program")
        api_version, kind, namespace, name, account, claimant = target
        await guard_create(object_reader(kubeconfig, context, api_version, kind, namespace, name),
                           api_version, kind, f"{namespace}/{name}", instance, args.name,
                           account, claimant)

    return pulumi.ResourceHook(CREATE_GUARD_HOOK, before_create)


def resource_options(spec: ObjectSpec, provider: pulumi.ProviderResource,
                     depends_on: Sequence[pulumi.Resource],
                     create_hook: pulumi.ResourceHook | None = None,
                     holds_secret: bool = False) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(
        # The live object's metadata.managedFields lists the field names and list-map keys it
        # sets (`f:data: {f:<key>}`, `k:{"name":...}`): a secret in a key would be plain text
        # in the state. So an object holding a secret keeps its output metadata encrypted.
        additional_secret_outputs=["metadata"] if holds_secret else None,
        provider=provider,
        depends_on=list(depends_on),
        # Object names are fixed, so create-before-delete would collide with itself.
        delete_before_replace=True,
        # User data: `destroy` forgets a PVC but leaves it in the cluster, and the next stack
        # for the same instance adopts it (server-side apply upserts on create).
        retain_on_delete=spec.group == "pvcs",
        # Most pod spec fields are immutable; replace on any spec change rather than let an
        # in-place patch fail half way (or silently update only the mutable image field).
        replace_on_changes=["spec"] if spec.group == "pods" else None,
        hooks=pulumi.ResourceHookBinding(before_create=[create_hook])
        if create_hook is not None else None,
        version=KUBERNETES_PROVIDER_VERSION,
    )


@dataclass
class Declared:
    spec: ObjectSpec
    resource: pulumi.CustomResource

    def output(self) -> pulumi.Output[dict]:
        # Name, namespace and uid are not secret, even when the metadata they come from is.
        metadata = pulumi.Output.unsecret(
            pulumi.Output.from_input(getattr(self.resource, "metadata", None)))
        manifest = self.spec.manifest
        return metadata.apply(lambda live: {
            "group": self.spec.group,
            "entry": self.spec.entry,
            "apiVersion": manifest["apiVersion"],
            "kind": manifest["kind"],
            "name": (live or {}).get("name", manifest["metadata"]["name"]),
            "namespace": (live or {}).get("namespace", manifest["metadata"].get("namespace")),
            "uid": (live or {}).get("uid"),
        })


def declare(objects: Iterable[Any], provider: pulumi.ProviderResource,
            secret_values: Collection[str] = (),
            create_hook: pulumi.ResourceHook | None = None) -> list[Declared]:
    """Declare every object; PVCs first, pods depending on all PVCs, other objects last."""
    specs = as_object_specs(objects)
    secrets = [s for s in secret_values if s]
    declared: list[Declared] = []
    pvcs: list[pulumi.Resource] = []
    for spec in specs:
        manifest = applied.applied_manifest(spec.group, spec.manifest)
        props = wrap_secrets(manifest, secrets)
        depends_on = pvcs if spec.group == "pods" else []
        resource = pulumi.CustomResource(
            type_token(manifest["apiVersion"], manifest["kind"]),
            spec.resource_name,
            props,
            opts=resource_options(spec, provider, depends_on, create_hook,
                                  holds_secret=bool(secret_paths(manifest, secrets))),
        )
        if spec.group == "pvcs":
            pvcs.append(resource)
        declared.append(Declared(spec, resource))
    return declared


def make_provider(kubeconfig: str | None, context: str | None) -> kubernetes.Provider:
    # Explicit provider: the stack never depends on whatever ambient default provider config
    # the engine process happens to see. No kubeconfig = in-cluster config / $KUBECONFIG.
    # A stable cluster identity: a rotated kubeconfig updates the provider instead of
    # replacing it and every object (see settings.CLUSTER_IDENTIFIER).
    args: dict[str, Any] = {"cluster_identifier": engine_settings.CLUSTER_IDENTIFIER}
    if kubeconfig:
        args["kubeconfig"] = kubeconfig
    if context:
        args["context"] = context
    return kubernetes.Provider(PROVIDER_NAME, **args)


def declare_stack(objects: Iterable[Any], kubeconfig: str | None = None,
                  context: str | None = None, secret_values: Collection[str] = (),
                  hooks: bool = True,
                  instance: tuple[str, str] | None = None) -> pulumi.Output[list[dict]]:
    """Provider + objects; returns the OBJECTS_OUTPUT value (a list of per-object dicts).

    hooks=False leaves out the create guard (Pulumi's unit-test mocks have no callback server).
    `instance` (namespace, name) is whose objects these are (see create_guard_hook).
    """
    specs = as_object_specs(objects)
    provider = make_provider(kubeconfig, context)
    create_hook = (create_guard_hook(kubeconfig, context, instance, guard_targets(specs))
                   if hooks else None)
    declared = declare(specs, provider, secret_values, create_hook)
    return pulumi.Output.all(*[d.output() for d in declared])


def make_program(objects: Iterable[Any], kubeconfig: str | None = None,
                 context: str | None = None,
                 secret_values: Collection[str] = (),
                 instance: tuple[str, str] | None = None) -> Callable[[], None]:
    """The inline program (a zero-argument function) for `LocalWorkspace`."""
    specs = as_object_specs(objects)  # validate before the engine starts

    def program() -> None:
        pulumi.export(OBJECTS_OUTPUT, declare_stack(specs, kubeconfig, context, secret_values,
                                                    instance=instance))

    return program


def empty_program() -> None:
    """The program for operations that must not declare anything (destroy, stack removal)."""
