"""program.py under Pulumi's own mocks: what the inline program registers with the engine.

A recording monitor keeps the raw RegisterResource requests, so the tests check what the engine
would really receive: type tokens, dependencies, resource options and secret markers on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor, Mocks

from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import applied, settings
from jupyternetes.engine.runtime import program
from jupyternetes.render.objects import render

# Outputs and mocks need a current event loop (see conftest.pulumi_event_loop).
pytestmark = pytest.mark.usefixtures("pulumi_event_loop")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


class EchoMocks(Mocks):
    """Returns inputs as state plus a uid, like the apiserver would (uid derived from name)."""

    def new_resource(self, args):
        state = dict(args.inputs)
        metadata = dict(state.get("metadata") or {})
        if args.typ != "pulumi:providers:kubernetes":
            metadata["uid"] = f"uid-{args.name}"
            state["metadata"] = metadata
        namespace = metadata.get("namespace", "default")
        return f"{namespace}/{metadata.get('name', args.name)}", state

    def call(self, args):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.requests: list = []

    def RegisterResource(self, request):
        self.requests.append(request)
        return super().RegisterResource(request)

    def by_name(self) -> dict:
        return {r.name: r for r in self.requests if r.type != "pulumi:pulumi:Stack"}


@pytest.fixture
def monitor():
    mocks = EchoMocks()
    recording = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="jupyternetes-instances", stack="default.x",
                             preview=False, monitor=recording)
    yield recording


@pytest.fixture
def seed_rendered():
    template = Template.from_dict(yaml.safe_load((EXAMPLES / "seed-template.yaml").read_text()))
    instance = Instance.from_dict(yaml.safe_load((EXAMPLES / "seed-instance.yaml").read_text()))
    return render(template, instance), instance


def wire(request) -> dict:
    return json_format.MessageToDict(request.object)


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def config_map(entry: str = "settings", data: dict | None = None) -> dict:
    return {"group": "otherResources", "entry": entry, "manifest": {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"x-{entry}", "namespace": "default"},
        "data": data or {"a": "b"}}}


def test_type_tokens():
    assert program.type_token("v1", "Pod") == "kubernetes:core/v1:Pod"
    assert program.type_token("apps/v1", "Deployment") == "kubernetes:apps/v1:Deployment"
    assert program.type_token("kadense.io/v1", "JupyterNotebookInstance") == \
        "kubernetes:kadense.io/v1:JupyterNotebookInstance"


def test_wrap_secrets_only_touches_leaves_with_a_secret():
    value = {"env": [{"name": "TOKEN", "value": "abc"}, {"name": "URL", "value": "h://x?t=abc"},
                     {"name": "OTHER", "value": "zzz"}], "n": 3}
    wrapped = program.wrap_secrets(value, ["abc"])
    assert isinstance(wrapped["env"][0]["value"], pulumi.Output)
    assert isinstance(wrapped["env"][1]["value"], pulumi.Output)
    assert wrapped["env"][2]["value"] == "zzz"
    assert wrapped["env"][0]["name"] == "TOKEN"
    assert wrapped["n"] == 3
    assert program.secret_paths(value, ["abc"]) == ["env[0].value", "env[1].value"]
    # An empty secret would match every string; it is ignored.
    assert program.wrap_secrets(value, [""]) == value


def test_as_object_specs_orders_groups_and_rejects_bad_input():
    pvc = {"group": "pvcs", "entry": "w", "manifest": {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x-w"}}}
    pod = {"group": "pods", "entry": "n", "manifest": {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x-n"}}}
    ordered = program.as_object_specs([config_map(), pod, pvc])
    assert [s.resource_name for s in ordered] == ["pvcs/w", "pods/n", "otherResources/settings"]
    with pytest.raises(program.ProgramError, match="appears twice"):
        program.as_object_specs([pod, pod])
    with pytest.raises(program.ProgramError, match=r"metadata\.name"):
        program.as_object_specs([{"group": "pods", "entry": "n", "manifest": {
            "apiVersion": "v1", "kind": "Pod", "metadata": {}}}])
    with pytest.raises(program.ProgramError, match="group"):
        program.as_object_specs([{"group": "services", "entry": "n", "manifest": {}}])


@pulumi.runtime.test
def test_seed_declares_pvc_then_pod_with_options(monitor, seed_rendered):
    rendered, instance = seed_rendered
    token = instance.variables["jupyterhub.api_token"]
    objects = program.declare_stack(rendered.objects(), kubeconfig="/k", context="ctx",
                                    secret_values=[token], hooks=False)

    def check(objects):
        reqs = monitor.by_name()
        assert set(reqs) == {"kubernetes", "pvcs/workspace", "pods/notebook"}
        provider, pvc, pod = reqs["kubernetes"], reqs["pvcs/workspace"], reqs["pods/notebook"]
        assert provider.type == "pulumi:providers:kubernetes"
        assert wire(provider)["kubeconfig"] == "/k"
        assert wire(provider)["context"] == "ctx"
        assert pvc.type == "kubernetes:core/v1:PersistentVolumeClaim"
        assert pod.type == "kubernetes:core/v1:Pod"
        # Both go through the explicit provider.
        assert pvc.provider.startswith(provider_urn(monitor))
        assert pod.provider.startswith(provider_urn(monitor))
        # The pod waits for the PVC; the PVC waits for nothing of ours.
        pvc_urn = urn_of(monitor, "pvcs/workspace")
        assert pvc_urn in pod.dependencies
        assert not [d for d in pvc.dependencies if "kubernetes:core" in d]
        # Options: PVC kept on destroy, pod replaced on spec change, fixed names.
        assert pvc.retainOnDelete is True
        assert pod.retainOnDelete is False
        assert list(pod.replaceOnChanges) == ["spec"]
        assert list(pvc.replaceOnChanges) == []
        assert pvc.deleteBeforeReplace and pod.deleteBeforeReplace
        pvc_wire, pod_wire = wire(pvc), wire(pod)
        assert pvc_wire["metadata"]["annotations"][applied.SKIP_AWAIT] == "true"
        assert pvc_wire["metadata"]["annotations"][applied.PATCH_FORCE] == "true"
        assert pod_wire["metadata"]["annotations"][applied.SKIP_AWAIT] == "true"
        assert applied.PATCH_FORCE not in pod_wire["metadata"]["annotations"]
        # One field manager for every object (the operator's create-ahead applies with it).
        for sent in (pvc_wire, pod_wire):
            assert sent["metadata"]["annotations"][applied.PATCH_FIELD_MANAGER] == \
                applied.FIELD_MANAGER
        assert pod_wire["metadata"]["name"] == f"{instance.name}-notebook"
        # camelCase keys reach the engine untouched.
        assert pod_wire["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
            f"{instance.name}-workspace"
        # The token is a secret on the wire, in both env vars; other values are plain.
        env = {e["name"]: e.get("value") for e in pod_wire["spec"]["containers"][0]["env"]}
        assert is_secret(env["JPY_API_TOKEN"]) and is_secret(env["JUPYTERHUB_API_TOKEN"])
        assert env["JUPYTERHUB_USER"] == "jovyan"
        assert token not in json.dumps(pod_wire).replace(json.dumps(env["JPY_API_TOKEN"]), "")\
            .replace(json.dumps(env["JUPYTERHUB_API_TOKEN"]), "")
        # The stack output: one entry per object, with the uid the "apiserver" assigned.
        assert objects == [
            {"group": "pvcs", "entry": "workspace", "apiVersion": "v1",
             "kind": "PersistentVolumeClaim", "name": f"{instance.name}-workspace",
             "namespace": "default", "uid": "uid-pvcs/workspace"},
            {"group": "pods", "entry": "notebook", "apiVersion": "v1", "kind": "Pod",
             "name": f"{instance.name}-notebook", "namespace": "default",
             "uid": "uid-pods/notebook"},
        ]

    return objects.apply(check)


def provider_urn(monitor) -> str:
    return urn_of(monitor, "kubernetes")


def urn_of(monitor, name: str) -> str:
    return next(urn for urn in monitor.resources if urn.endswith(f"::{name}"))


@pulumi.runtime.test
def test_other_resources_generic_kind_without_spec(monitor):
    crd_object = {"group": "otherResources", "entry": "quota", "manifest": {
        "apiVersion": "kadense.io/v1", "kind": "Thing",
        "metadata": {"name": "x-quota", "namespace": "default", "labels": {"a": "b"}},
        "spec": {"size": 3}}}
    declared = program.declare([config_map(data={"k": "v"}), crd_object],
                               program.make_provider(None, None))

    def check(outputs):
        reqs = monitor.by_name()
        cm, thing = reqs["otherResources/settings"], reqs["otherResources/quota"]
        assert cm.type == "kubernetes:core/v1:ConfigMap"
        assert wire(cm)["data"] == {"k": "v"}
        assert thing.type == "kubernetes:kadense.io/v1:Thing"
        assert wire(thing)["spec"] == {"size": 3.0}
        assert wire(thing)["metadata"]["labels"] == {"a": "b"}
        assert not cm.retainOnDelete and list(cm.replaceOnChanges) == []
        # The provider without kubeconfig/context passes neither (in-cluster or $KUBECONFIG).
        assert "kubeconfig" not in wire(reqs["kubernetes"])
        assert [o["uid"] for o in outputs] == ["uid-otherResources/settings",
                                               "uid-otherResources/quota"]

    return pulumi.Output.all(*[d.output() for d in declared]).apply(check)


@pulumi.runtime.test
def test_secret_in_a_label_key_wraps_the_mapping(monitor):
    obj = config_map(data={"token-s3cr3t": "x", "plain": "y"})
    declared = program.declare([obj], program.make_provider(None, None),
                               secret_values={"s3cr3t"})

    def check(_):
        data = wire(monitor.by_name()["otherResources/settings"])["data"]
        assert is_secret(data)

    return declared[0].output().apply(check)


def test_make_program_validates_before_the_engine_runs():
    with pytest.raises(program.ProgramError, match=r"manifest\.kind"):
        program.make_program([{"group": "pods", "entry": "n", "manifest": {
            "apiVersion": "v1", "metadata": {"name": "x"}}}])


def test_manifest_is_not_mutated():
    obj = config_map()
    before = json.dumps(obj, sort_keys=True)
    applied.with_annotations(obj["manifest"], {"a": "b"})
    assert json.dumps(obj, sort_keys=True) == before


def test_wait_until_gone_waits_for_a_terminating_object_only():
    import asyncio

    states = [{"metadata": {"deletionTimestamp": "t"}}, {"metadata": {"deletionTimestamp": "t"}},
              None]
    reads: list[int] = []

    def read():
        reads.append(1)
        return states[len(reads) - 1]

    async def no_sleep(_):
        return None

    asyncio.run(program.wait_until_gone(read, "pod x", timeout=60, sleep=no_sleep))
    assert len(reads) == 3
    # A live pod that is not being deleted: adoption, no waiting.
    reads.clear()
    states[:] = [{"metadata": {"name": "x"}}]
    assert asyncio.run(program.wait_until_gone(read, "pod x", timeout=60, sleep=no_sleep)) == {
        "metadata": {"name": "x"}}
    assert len(reads) == 1
    # Still terminating at the deadline: a clear error.
    clock = iter([0.0, 5.0, 11.0])
    with pytest.raises(TimeoutError, match=r"pod x is still terminating after 10s"):
        asyncio.run(program.wait_until_gone(
            lambda: {"metadata": {"deletionTimestamp": "t"}}, "pod x", timeout=10,
            clock=lambda: next(clock), sleep=no_sleep))


# ---- the create guard (before_create hook): ownership at the moment of the engine's create --


def _claim(labels: dict) -> dict:
    return {"kind": "PersistentVolumeClaim",
            "metadata": {"name": "alice-data-home", "namespace": "hub", "labels": labels}}


def test_create_guard_refuses_another_instances_object_and_allows_its_own():
    import asyncio

    from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE

    theirs = _claim({LABEL_INSTANCE: "alice", LABEL_INSTANCE_NAMESPACE: "hub"})
    mine = _claim({LABEL_INSTANCE: "alice-data", LABEL_INSTANCE_NAMESPACE: "hub"})

    def guard(live, instance=("hub", "alice-data")):
        return asyncio.run(program.guard_create(lambda: live, "v1", "PersistentVolumeClaim",
                                                "hub/alice-data-home", instance, "pvcs/home"))

    with pytest.raises(program.ProgramError, match="belongs to instance hub/alice "):
        guard(theirs)
    with pytest.raises(program.ProgramError, match=r"jupyternetes\.kadense\.io/adopt"):
        guard(_claim({}))
    guard(mine)
    guard(None)
    guard(theirs, instance=None)  # no instance given: nothing to check against


def test_create_guard_judges_a_live_pod_from_its_one_read():
    import asyncio

    from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE

    def pod(instance):
        return {"kind": "Pod", "metadata": {"name": "u-nb", "namespace": "hub", "labels": {
            LABEL_INSTANCE: instance, LABEL_INSTANCE_NAMESPACE: "hub"}}}

    reads: list[str] = []

    def guard(live):
        def read():
            reads.append("read")
            return live
        return asyncio.run(program.guard_create(read, "v1", "Pod", "hub/u-nb", ("hub", "u"),
                                                "pods/nb"))

    guard(pod("u"))  # created ahead by the operator: its own, taken over
    assert reads == ["read"]
    with pytest.raises(program.ProgramError, match="belongs to instance hub/someone "):
        guard(pod("someone"))


def test_create_guard_refuses_an_earlier_accounts_claim_of_the_same_instance_name():
    import asyncio

    from jupyternetes.crd.labels import LABEL_ACCOUNT, LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE

    def guard(live, account):
        return asyncio.run(program.guard_create(lambda: live, "v1", "PersistentVolumeClaim",
                                                "hub/u-home", ("hub", "u"), "pvcs/home",
                                                account))

    earlier = _claim({LABEL_INSTANCE: "u", LABEL_INSTANCE_NAMESPACE: "hub",
                      LABEL_ACCOUNT: "old"})
    with pytest.raises(program.ProgramError, match="another account of the same name"):
        guard(earlier, "new")
    guard(earlier, "old")
    guard(_claim({LABEL_INSTANCE: "u", LABEL_INSTANCE_NAMESPACE: "hub"}), "new")  # unlabelled


def test_create_guard_targets_come_from_the_manifests_not_the_hook_inputs():
    specs = program.as_object_specs([
        {"group": "pvcs", "entry": "home", "manifest": {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "a-home", "namespace": "hub",
                         "labels": {"secret": "token-value",
                                    "jupyternetes.kadense.io/account": "acc1"}}}},
        {"group": "otherResources", "entry": "svc", "manifest": {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "a-svc"}}}])
    assert program.guard_targets(specs) == {
        "pvcs/home": ("v1", "PersistentVolumeClaim", "hub", "a-home", "acc1", None),
        "otherResources/svc": ("v1", "Service", "default", "a-svc", None, None)}


def test_an_object_holding_a_secret_keeps_its_output_metadata_secret():
    """managedFields (in the output metadata) lists a secret used as a key in plain text."""
    from jupyternetes.engine.runtime.program import ObjectSpec, resource_options

    spec = ObjectSpec("otherResources", "cm", {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": "i-cm"}})
    assert resource_options(spec, None, [], holds_secret=True).additional_secret_outputs == [
        "metadata"]
    assert not resource_options(spec, None, []).additional_secret_outputs


@pulumi.runtime.test
def test_provider_has_a_stable_cluster_identifier(monitor, seed_rendered):
    """A rotated kubeconfig must update the provider, never replace it (and with it every
    user's pod): pulumi-kubernetes replaces on a changed clusterIdentifier only when one is
    set, and then ignores kubeconfig/context changes. The identifier is a constant, not
    derived from the kubeconfig or context."""
    rendered, _ = seed_rendered
    objects = program.declare_stack(rendered.objects(), kubeconfig="/rotated", context="c",
                                    hooks=False)

    def check(_):
        provider = monitor.by_name()["kubernetes"]
        assert wire(provider)["clusterIdentifier"] == settings.CLUSTER_IDENTIFIER
        assert wire(provider)["kubeconfig"] == "/rotated"

    return objects.apply(check)
