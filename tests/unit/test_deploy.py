"""The deploy stack (Pulumi.yaml + stacks/ + jupyternetes/deploy/): settings, RBAC, manifests, and
the program under Pulumi's own mocks (what the engine would receive)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as kubernetes
import pytest
import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor, Mocks

from jupyternetes.app.cli import build_parser
from jupyternetes.crd.definitions import CRD_DIR, load_crd_documents
from jupyternetes.deploy import hub, manifests, rbac
from jupyternetes.deploy import program as deploy
from jupyternetes.deploy.settings import (
    HUB_INSTALL_KEYS,
    LOG_LEVELS,
    ROLLOUTS,
    DeploySettings,
    ResourceKind,
    SettingsError,
    settings_from_config,
)

# Outputs and mocks need a current event loop (see conftest.pulumi_event_loop).
pytestmark = pytest.mark.usefixtures("pulumi_event_loop")

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def settings(**config) -> DeploySettings:
    return settings_from_config(config.get)


# ---- Pulumi.yaml --------------------------------------------------------------------------


def test_project_file_runs_the_stacks_program_in_the_venv():
    assert PROJECT["name"] == "jupyternetes"
    assert PROJECT["main"] == "stacks/"
    assert PROJECT["runtime"] == {"name": "python",
                                  "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert (REPO / "stacks" / "__main__.py").is_file()


def test_every_setting_is_documented_with_its_default_in_pulumi_yaml():
    declared = PROJECT["config"]
    fields = {camel(f.name): f for f in dataclasses.fields(DeploySettings)
              if f.name not in HUB_INSTALL_KEYS}
    sections = {key.split(".")[0] for key in HUB_INSTALL_KEYS.values()}
    assert set(declared) - {"statePassphrase"} == set(fields) | sections
    assert declared["statePassphrase"]["default"] == ""
    defaults = DeploySettings()
    for name, key in HUB_INSTALL_KEYS.items():
        head, *path = key.split(".")
        assert declared[head]["description"], head
        value = declared[head]["default"]
        for part in path:
            value = value[part]
        expected = getattr(defaults, name)
        assert value == (list(expected) if isinstance(expected, tuple) else expected), key
    for key, field in fields.items():
        assert declared[key]["description"], key
        assert "default" in declared[key], key
        value = getattr(defaults, field.name)
        if isinstance(value, tuple):
            value = list(value)
        assert declared[key]["default"] == value, key
    # The defaults read back through the program's own parser give the defaults.
    assert settings(**{k: v["default"] for k, v in declared.items() if "default" in v}) == defaults


def test_choices_are_the_operators_own():
    parser = build_parser()
    operator = parser._subparsers._group_actions[0].choices["operator"]  # argparse has no API
    actions = {a.dest: a for a in operator._actions}
    assert tuple(actions["template_rollout"].choices) == ROLLOUTS
    assert tuple(actions["log_level"].choices) == LOG_LEVELS


# ---- settings -----------------------------------------------------------------------------


def test_settings_parse_cli_strings_and_structures():
    s = settings(replicas="1", workers="8", retainCrds="false",
                 watchNamespaces=["users", "users", "team-a"],
                 otherResourceKinds=[{"apiGroup": "", "resource": "services"},
                                     {"resource": "configmaps"},
                                     {"apiGroup": "", "resource": "pods"}],
                 resources={"limits": {"memory": "2Gi", "cpu": 1}})
    assert s.workers == 8 and s.retain_crds is False
    assert s.watch_namespaces == ("users", "team-a")
    # pods and PVCs are always granted; not listed twice.
    assert s.other_resource_kinds == (ResourceKind("", "services"), ResourceKind("", "configmaps"))
    assert s.resources == {"limits": {"memory": "2Gi", "cpu": "1"},
                           "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert not s.cluster_wide and s.file_state


@pytest.mark.parametrize(("config", "message"), [
    ({"replicas": 2}, r"replicas: 2 operators cannot share one file:// state.*stateBackendUrl"
                      r".*postgres://"),
    ({"replicas": 33, "stateBackendUrl": "s3://b"}, r"replicas: 33 is more than shards \(32\)"),
    ({"shards": -1}, r"shards: -1 is below the minimum 0"),
    ({"shards": 5000}, r"shards: 5000 is above the maximum 1024"),
    ({"namespace": "Bad_NS"}, r"namespace: 'Bad_NS' is not a namespace name"),
    ({"watchNamespaces": "users"}, r"watchNamespaces: expected a list.*--path"),
    ({"watchNamespaces": ["ok", "NO"]}, r"watchNamespaces\[1\]"),
    ({"templateRollout": "later"}, r"templateRollout: 'later' is not one of next-start"),
    ({"workers": 0}, r"workers: 0 is below the minimum 1"),
    ({"workers": "many"}, r"workers: expected a whole number"),
    ({"otherResourceKinds": [{"apiGroup": "*", "resource": "x"}]}, r"wildcards"),
    ({"otherResourceKinds": ["services"]}, r"otherResourceKinds\[0\]: expected \{apiGroup"),
    ({"stateStorageSize": "lots"}, r"stateStorageSize: 'lots' is not a Kubernetes quantity"),
    ({"stateBackendCredentialsSecret": "aws"}, r"stateBackendUrl is not"),
    ({"stateBackendUrl": "file:///x"}, r"file:// backend is the default"),
    ({"resources": {"limit": {}}}, r"resources: expected"),
    ({"retainCrds": "yes"}, r"retainCrds: expected true or false"),
])
def test_bad_settings_name_the_key(config, message):
    with pytest.raises(SettingsError, match=message):
        settings(**config)


def test_replicas_with_a_shared_backend():
    s = settings(replicas=3, stateBackendUrl="s3://bucket/jupyternetes",
                 stateBackendCredentialsSecret="state-backend")
    assert s.replicas == 3 and not s.file_state
    assert s.shards == 32 and s.sharded


def test_one_replica_with_file_state_is_the_default_and_not_sharded():
    s = settings()
    assert s.replicas == 1 and s.file_state and not s.sharded
    # shards is only used with a shared backend; 0 there is active/standby leader election.
    assert not settings(shards=8).sharded
    assert not settings(stateBackendUrl="postgres://u@h/db", replicas=3, shards=0).sharded


# ---- RBAC ---------------------------------------------------------------------------------


def rules_of(objects, kind):
    return {o.manifest["metadata"].get("namespace", ""): o.manifest["rules"]
            for o in objects if o.manifest["kind"] == kind}


def verbs(rules, group, resource):
    return sorted({v for r in rules if group in r["apiGroups"] and resource in r["resources"]
                   for v in r["verbs"]})


def test_cluster_wide_operator_gets_cluster_roles_and_a_lease_role():
    objects = rbac.operator_rbac(settings(), manifests.labels())
    cluster = [o.manifest for o in objects if o.manifest["kind"] == "ClusterRole"]
    assert {c["metadata"]["name"] for c in cluster} == {
        "jupyternetes-operator-jupyternetes", "jupyternetes-operator-jupyternetes-templates"}
    workload = next(c for c in cluster if c["metadata"]["name"].endswith("-jupyternetes"))
    rules = workload["rules"]
    assert verbs(rules, "kadense.io", "jupyternotebookinstances") == \
        ["get", "list", "patch", "watch"]
    assert verbs(rules, "kadense.io", "jupyternotebookinstances/status") == ["patch"]
    assert verbs(rules, "", "secrets") == ["get"]
    assert verbs(rules, "", "persistentvolumeclaims") == ["create", "get", "list", "patch"]
    assert verbs(rules, "", "events") == ["create", "patch"]
    assert verbs(rules, "kadense.io", "jupyternotebooktemplates") == []
    assert verbs(rules, "", "namespaces") == ["get"]
    assert verbs(rules, "storage.k8s.io", "storageclasses") == ["get"]
    assert all("resourceNames" not in r for r in rules)
    roles = rules_of(objects, "Role")
    assert set(roles) == {"jupyternetes"}
    # One replica on the file:// default: the one Lease loop's verbs (leader and membership).
    assert verbs(roles["jupyternetes"], "coordination.k8s.io", "leases") == \
        ["create", "delete", "list", "update"]
    bindings = [o.manifest for o in objects if o.manifest["kind"].endswith("Binding")]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jupyternetes-operator",
                                        "namespace": "jupyternetes"}]


def test_namespaced_operator_has_no_cluster_role_for_workloads():
    s = settings(watchNamespaces=["users", "team"], templateNamespaces=["hub"],
                 otherResourceKinds=[{"apiGroup": "", "resource": "services"},
                                     {"apiGroup": "networking.k8s.io",
                                      "resource": "networkpolicies"}])
    objects = rbac.operator_rbac(s, manifests.labels())
    # One ClusterRole only: get on exactly the watched namespaces (cluster-scoped objects).
    (cluster_role,) = [o.manifest for o in objects if o.manifest["kind"] == "ClusterRole"]
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"],
                                      "verbs": ["get"], "resourceNames": ["users", "team"]},
                                     {"apiGroups": ["storage.k8s.io"],
                                      "resources": ["storageclasses"], "verbs": ["get"]}]
    roles = rules_of(objects, "Role")
    assert set(roles) == {"users", "team", "hub", "jupyternetes"}
    assert verbs(roles["users"], "", "services") == \
        ["create", "delete", "get", "list", "patch", "watch"]
    assert verbs(roles["team"], "networking.k8s.io", "networkpolicies") != []
    assert verbs(roles["hub"], "kadense.io", "jupyternotebooktemplates") == \
        ["get", "list", "watch"]
    assert verbs(roles["hub"], "kadense.io", "jupyternotebooktemplates/status") == ["patch"]
    assert verbs(roles["hub"], "", "pods") == []
    # Resource names are unique (they are Pulumi URNs).
    names = [o.resource_name for o in objects]
    assert len(names) == len(set(names))


def test_sharded_operator_may_manage_the_shard_leases_in_its_namespace_only():
    s = settings(stateBackendUrl="postgres://u@db/j", replicas=3)
    objects = rbac.operator_rbac(s, manifests.labels())
    lease_roles = {ns: rules for ns, rules in rules_of(objects, "Role").items()
                   if verbs(rules, "coordination.k8s.io", "leases")}
    assert set(lease_roles) == {"jupyternetes"}
    assert verbs(lease_roles["jupyternetes"], "coordination.k8s.io", "leases") == \
        sorted(rbac.SHARD_LEASE_VERBS)
    # Exactly the verbs shardleases.py uses (no get, watch or patch): its docstring lists them.
    assert sorted(rbac.SHARD_LEASE_VERBS) == ["create", "delete", "list", "update"]
    assert not [r for o in objects if o.manifest["kind"] == "ClusterRole"
                for r in o.manifest["rules"] if "leases" in r["resources"]]


def test_no_wildcards_and_no_secret_listing_anywhere():
    s = settings(hubNamespace="hub")
    for mode in (s, settings(hubNamespace="hub", hubUserNamespaces=True)):
        for obj in rbac.operator_rbac(mode, {}) + rbac.hub_rbac(mode, {}):
            for r in obj.manifest.get("rules", []):
                assert "*" not in r["verbs"] and "*" not in r["resources"]
                assert "*" not in r["apiGroups"]
                assert not ({"list", "watch"} & set(r["verbs"]) and "secrets" in r["resources"])
    operator_rules = [r for o in rbac.operator_rbac(s, {}) for r in o.manifest.get("rules", [])]
    assert verbs(operator_rules, "", "secrets") == ["get"]
    assert verbs(operator_rules, "kadense.io", "jupyternotebooktemplates") == \
        ["get", "list", "watch"]


def test_hub_role_in_the_user_namespace_only():
    assert rbac.hub_rbac(settings(), {}) == []
    objects = rbac.hub_rbac(settings(hubNamespace="hub", hubServiceAccount="jhub",
                                     hubUserNamespace="users"), {})
    assert [o.manifest["kind"] for o in objects] == ["Role", "RoleBinding"]
    role, binding = (o.manifest for o in objects)
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "users"
    # Exactly what the spawner calls (spawner/cluster.py).
    assert verbs(role["rules"], "kadense.io", "jupyternotebookinstances") == \
        ["create", "delete", "get", "list", "watch"]
    # Its own token Secrets: made, owned, deleted; never read, so no user's token is readable.
    assert verbs(role["rules"], "", "secrets") == ["create", "delete", "patch"]
    assert verbs(role["rules"], "", "pods") == ["delete", "list", "watch"]
    assert verbs(role["rules"], "", "events") == ["list", "watch"]
    # The spawner's progress watches claims; delete_forever deletes or releases (patches) a
    # deleted user's claims.
    assert verbs(role["rules"], "", "persistentvolumeclaims") == \
        ["delete", "list", "patch", "watch"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "jhub",
                                    "namespace": "hub"}]


# ---- manifests ----------------------------------------------------------------------------


def operator_flags(args):
    return build_parser().parse_args(args)


def test_operator_args_are_real_operator_flags():
    s = settings(watchNamespaces=["a", "b"], templateNamespaces=["hub"], workers=2,
                 templateRollout="immediate", logLevel="debug", secretVariables=["db.password"],
                 stateBackendUrl="s3://b/p", metricsPort=9100, shutdownGraceSeconds=60)
    parsed = operator_flags(manifests.operator_args(s))
    assert parsed.namespace == ["a", "b"] and parsed.template_namespace == ["hub"]
    assert parsed.workers == 2 and parsed.template_rollout == "immediate"
    assert parsed.log_level == "debug" and parsed.secret_variable == ["db.password"]
    # The backend URL (it may hold a password) is in the Secret and PULUMI_BACKEND_URL, not argv.
    assert parsed.backend_url is None and parsed.state_dir == manifests.STATE_DIR
    assert "s3://b/p" not in manifests.operator_args(s)
    env = {e["name"]: e for e in manifests.deployment(s)["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert env["PULUMI_BACKEND_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": manifests.BACKEND_SECRET, "key": manifests.BACKEND_URL_KEY}
    assert manifests.backend_secret(s)["stringData"][manifests.BACKEND_URL_KEY] == "s3://b/p"
    assert manifests.backend_secret(settings()) is None
    assert parsed.expected_replicas == 1
    # A shared backend: sharded, the replica named by its pod (the kubelet expands $(POD_NAME)).
    assert parsed.shards == 32 and parsed.replica_id == "$(POD_NAME)"
    assert operator_flags(manifests.operator_args(settings())).shards == 0
    assert parsed.pulumi_home == manifests.PULUMI_HOME
    assert parsed.health_port == parsed.metrics_port == 9100
    assert parsed.shutdown_grace == 60
    defaults = operator_flags(manifests.operator_args(settings()))
    assert defaults.namespace == [] and defaults.backend_url is None


def test_deployment_is_locked_down_and_recreated_with_file_state():
    d = manifests.deployment(settings(workers=3))
    spec = d["spec"]["template"]["spec"]
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert d["spec"]["replicas"] == 1
    (container,) = spec["containers"]
    assert container["command"] == ["jupyternetes"] and container["args"][0] == "operator"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc[
        "allowPrivilegeEscalation"]
    assert spec["securityContext"]["runAsUser"] != 0
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["terminationGracePeriodSeconds"] > 120
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {manifests.STATE_DIR: "state", manifests.PULUMI_HOME: "pulumi-home",
                      "/tmp": "tmp"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == manifests.STATE_PVC
    (init,) = spec["initContainers"]
    assert init["command"][-2:] == [manifests.PLUGINS_DIR, f"{manifests.PULUMI_HOME}/plugins"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PULUMI_CONFIG_PASSPHRASE"]["valueFrom"]["secretKeyRef"] == {
        "name": manifests.STATE_SECRET, "key": "passphrase"}
    # The operator's own pod must not look like one it manages (its pod watch selects on this).
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels.get("app.kubernetes.io/managed-by") != "jupyternetes"
    assert set(d["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())


def test_image_pull_secrets():
    spec = manifests.deployment(settings(imagePullSecrets=["registry"]))["spec"]["template"][
        "spec"]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert "imagePullSecrets" not in manifests.deployment(settings())["spec"]["template"]["spec"]
    with pytest.raises(SettingsError, match=r"imagePullSecrets\[0\]"):
        settings(imagePullSecrets=["Bad Name"])


def test_several_replicas_with_postgres_are_sharded_spread_and_budgeted():
    s = settings(stateBackendUrl="postgres://u:pw@db:5432/j", replicas=3, shards=24)
    d = manifests.deployment(s)
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = d["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--shards") + 1] == "24"
    assert args[args.index("--expected-replicas") + 1] == "3"
    # The replica id is the pod's name: POD_NAME from the downward API, expanded by the kubelet.
    assert args[args.index("--replica-id") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "pw" not in " ".join(args)
    (term,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"labelSelector": {"matchLabels":
                                                         manifests.selector_labels()},
                                       "topologyKey": "kubernetes.io/hostname"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"][
        "podAntiAffinity"]
    pdb = manifests.disruption_budget(s)
    assert pdb["apiVersion"] == "policy/v1" and pdb["kind"] == "PodDisruptionBudget"
    assert pdb["metadata"]["namespace"] == "jupyternetes"
    assert pdb["spec"] == {"maxUnavailable": 1,
                           "selector": {"matchLabels": manifests.selector_labels()}}
    # The budget selects exactly the operator's pods.
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert set(pdb["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())


def test_one_replica_has_no_budget_and_file_state_no_sharding_flags():
    assert manifests.disruption_budget(settings()) is None
    assert manifests.disruption_budget(settings(stateBackendUrl="postgres://u@db/j")) is None
    d = manifests.deployment(settings())
    args = d["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shards" not in args and "--replica-id" not in args
    assert "affinity" not in d["spec"]["template"]["spec"]
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    # shards 0 with a shared backend: today's single-leader election, no --shards.
    args = manifests.operator_args(settings(stateBackendUrl="postgres://u@db/j", replicas=2,
                                            shards=0))
    assert "--shards" not in args


def test_remote_state_has_no_pvc_and_rolls():
    s = settings(stateBackendUrl="s3://b", stateBackendCredentialsSecret="aws", replicas=2)
    assert manifests.state_pvc(s) is None
    d = manifests.deployment(s)
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "aws"}}]
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}


def test_metrics_service_targets_the_http_port():
    svc = manifests.metrics_service(settings(metricsPort=9100))
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "http"}]
    container = manifests.deployment(settings(metricsPort=9100))["spec"]["template"]["spec"][
        "containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 9100}]
    assert svc["spec"]["selector"] == manifests.selector_labels()


def test_crds_are_the_files_and_the_example_is_clean():
    # the package's CRDs are the repository's crds/ (a link to them), so the two cannot drift
    assert load_crd_documents() == load_crd_documents(REPO / "crds")
    assert (REPO / "crds").resolve() == Path(str(CRD_DIR)).resolve()
    template = manifests.example_template("hub")
    meta = template["metadata"]
    assert meta["namespace"] == "hub" and meta["name"] == "default-template"
    assert not {"uid", "resourceVersion", "annotations"} & set(meta)
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "pulumi"
    assert "allowedNamespaces" not in template["spec"]


def test_the_example_template_never_writes_the_hub_token_into_a_literal_value():
    template = manifests.example_template("hub", ("users",))
    assert template["spec"]["allowedNamespaces"] == ["hub", "users"]
    text = json.dumps(template)
    assert "api_token}" not in text  # no {jupyterhub.api_token} placeholder anywhere
    env = {e["name"]: e for c in template["spec"]["pods"][0]["spec"]["containers"]
           for e in c.get("env", [])}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "{jupyternetes.instance.name}-hub", "key": "JUPYTERHUB_API_TOKEN"}
    for entry in env.values():
        assert "TOKEN" not in entry["name"] or "value" not in entry
    # It is the hub's: usable from the hub's user namespace.
    s = settings(hubNamespace="hub", hubUserNamespace="users", exampleTemplateNamespace="hub")
    assert manifests.example_users(s) == ("users",)


def test_watch_namespaces_default_to_the_hub_users_namespace():
    assert settings().cluster_wide  # no hub: every namespace, as before
    s = settings(hubNamespace="hub", hubUserNamespace="users")
    assert s.watch_namespaces == ("users",) and not s.cluster_wide
    assert settings(hubNamespace="hub").watch_namespaces == ("hub",)
    assert settings(hubNamespace="hub", watchNamespaces=["*"]).cluster_wide
    assert settings(hubNamespace="hub", watchNamespaces=["a"]).watch_namespaces == ("a",)
    # No rights on workloads or Secrets outside the watched namespace.
    objects = [o.manifest for o in rbac.operator_rbac(s, {})]
    assert ("Role", "users") in {(m["kind"], m["metadata"].get("namespace")) for m in objects}
    cluster_rules = [r for m in objects if m["kind"] == "ClusterRole" for r in m["rules"]]
    assert not [r for r in cluster_rules if {"pods", "secrets"} & set(r["resources"])]
    args = manifests.operator_args(s)
    assert args[args.index("--namespace") + 1] == "users"


def test_other_resource_kinds_are_the_operators_allow_list_and_rbac_needs_the_opt_in():
    s = settings(otherResourceKinds=[
        {"apiGroup": "", "resource": "services"},
        {"apiGroup": "networking.k8s.io", "resource": "networkpolicies"},
        {"apiGroup": "example.com", "resource": "gizmata", "kind": "Gizmo"},
        {"apiGroup": "rbac.authorization.k8s.io", "resource": "rolebindings"}],
        allowRbacKinds=True)
    args = manifests.operator_args(s)
    flags = [args[i + 1] for i, a in enumerate(args) if a == "--other-resource-kind"]
    assert flags == ["services", "networkpolicies.networking.k8s.io", "Gizmo.example.com",
                     "rolebindings.rbac.authorization.k8s.io"]
    assert "--allow-rbac-kinds" in args
    # The operator reads these flags as the same allow-list.
    from jupyternetes.policy.trust import TrustPolicy
    policy = TrustPolicy.from_flags(flags, allow_rbac_kinds=True)
    assert policy.allows_kind("example.com", "Gizmo")
    assert policy.allows_kind("networking.k8s.io", "NetworkPolicy")
    assert "--allow-rbac-kinds" not in manifests.operator_args(settings())
    with pytest.raises(SettingsError, match="allowRbacKinds: true, but otherResourceKinds"):
        settings(allowRbacKinds=True)
    with pytest.raises(SettingsError, match=r"otherResourceKinds\[0\].kind"):
        settings(otherResourceKinds=[{"apiGroup": "", "resource": "x", "kind": "lower"}])


# ---- the program under Pulumi mocks -------------------------------------------------------


class EchoMocks(Mocks):
    def new_resource(self, args):
        metadata = dict(args.inputs.get("metadata") or {})
        return f"{metadata.get('namespace', '')}/{metadata.get('name', args.name)}", \
            dict(args.inputs)

    def call(self, args):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks):
        super().__init__(mocks)
        self.requests = []

    def RegisterResource(self, request):
        self.requests.append(request)
        return super().RegisterResource(request)

    def by_name(self):
        return {r.name: r for r in self.requests if r.type != "pulumi:pulumi:Stack"}


@pytest.fixture
def monitor():
    mocks = EchoMocks()
    recording = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="jupyternetes", stack="test", preview=False,
                             monitor=recording)
    yield recording


def wire(request):
    return json_format.MessageToDict(request.object)


def urn(monitor, name):
    return next(u for u in monitor.resources if u.endswith(f"::{name}"))


@pulumi.runtime.test
def test_program_declares_the_install(monitor):
    s = settings(hubNamespace="hub", exampleTemplateNamespace="hub")
    declared = deploy.declare_all(s)

    def check(_):
        reqs = monitor.by_name()
        crd_names = {f"crd/{d['metadata']['name']}" for d in load_crd_documents(REPO / "crds")}
        assert crd_names <= set(reqs)
        for name in crd_names:
            assert reqs[name].type == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
            assert reqs[name].retainOnDelete is True
        assert reqs["namespace"].type == "kubernetes:core/v1:Namespace"
        assert reqs["deployment"].type == "kubernetes:apps/v1:Deployment"
        assert reqs["hub-role/hub/jupyternetes-hub"].type == \
            "kubernetes:rbac.authorization.k8s.io/v1:Role"
        assert reqs["example-template"].type == \
            "kubernetes:kadense.io/v1:JupyterNotebookTemplate"
        # The operator starts after its CRDs, RBAC, Secret and PVC exist.
        deps = set(reqs["deployment"].dependencies)
        for name in [*crd_names, "secret/state", "pvc/state", "serviceaccount",
                     # The hub's user namespace only (the default with a hub).
                     "operator-rolebinding/hub/jupyternetes-operator"]:
            assert urn(monitor, name) in deps, name
        # Everything in the operator's namespace is created after it (and deleted before it).
        for name in ["secret/state", "pvc/state", "serviceaccount", "service/metrics"]:
            assert urn(monitor, "namespace") in reqs[name].dependencies, name
        # Nothing else is retained: destroy removes the operator completely.
        assert {n for n, r in reqs.items() if r.retainOnDelete} == crd_names
        # A generated passphrase: a secret on the wire, kept across runs by ignore_changes.
        secret = reqs["secret/state"]
        assert list(secret.ignoreChanges) == ["stringData", "data"]
        assert wire(secret)["stringData"]["passphrase"][SECRET_SIG]
        # The raw resources ask for the plugin version the SDK pins.
        assert re.fullmatch(r"\d+\.\d+\.\d+", reqs["deployment"].version)

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)


@pulumi.runtime.test
def test_program_declares_the_user_namespace_install(monitor):
    s = settings(hubNamespace="hub", hubUserNamespaces=True)
    declared = deploy.declare_all(s)
    policy = f"hub-admission-policy/jupyternetes-hub-user-namespaces-{s.namespace}"

    def check(_):
        reqs = monitor.by_name()
        assert reqs[policy].type == (
            "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy")
        role = f"user-namespace-clusterrole/{rbac.user_namespace_role(s, rbac.OPERATOR)}"
        assert reqs[role].type == "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
        assert urn(monitor, role) in set(reqs["deployment"].dependencies)

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)


@pulumi.runtime.test
def test_raw_resources_ask_for_the_plugin_the_typed_sdk_resources_ask_for(monitor):
    # Both programs declare raw CustomResources with KUBERNETES_PROVIDER_VERSION; a typed
    # resource of the installed SDK asks for its own plugin version, which is the one to match.
    raw = deploy.declare("raw", {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "raw"}})
    typed = kubernetes.core.v1.ConfigMap("typed", metadata={"name": "typed"})

    def check(_):
        reqs = monitor.by_name()
        assert reqs["typed"].version
        assert reqs["raw"].version == reqs["typed"].version

    return pulumi.Output.all(raw.urn, typed.urn).apply(check)


@pulumi.runtime.test
def test_configured_passphrase_is_used_and_kept(monitor):
    declared = deploy.declare_all(settings(retainCrds=False),
                                  pulumi.Output.secret("from-config"))

    def check(values):
        reqs = monitor.by_name()
        assert list(reqs["secret/state"].ignoreChanges) == ["stringData", "data"]
        assert wire(reqs["secret/state"])["stringData"]["passphrase"]["value"] == "from-config"
        assert not [n for n, r in reqs.items() if r.retainOnDelete]

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)


@pulumi.runtime.test
def test_several_replicas_declare_a_disruption_budget(monitor):
    s = settings(stateBackendUrl="postgres://u:pw@db/j", replicas=3)
    declared = deploy.declare_all(s)

    def check(_):
        reqs = monitor.by_name()
        pdb = reqs["poddisruptionbudget"]
        assert pdb.type == "kubernetes:policy/v1:PodDisruptionBudget"
        assert urn(monitor, "namespace") in pdb.dependencies
        assert wire(pdb)["spec"]["maxUnavailable"] == 1
        assert wire(reqs["deployment"])["spec"]["replicas"] == 3
        assert "pvc/state" not in reqs and "secret/backend" in reqs

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)


@pulumi.runtime.test
def test_one_replica_declares_no_disruption_budget(monitor):
    declared = deploy.declare_all(settings())

    def check(_):
        assert "poddisruptionbudget" not in monitor.by_name()

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)


def test_config_lookup_parses_structures_only():
    class FakeConfig:
        values = {"replicas": "2", "watchNamespaces": '["a"]', "image": "x:1",
                  "resources": '{"limits": {"memory": "1Gi"}}', "namespace": "123"}

        def get(self, key):
            return self.values.get(key)

    get = deploy.config_lookup(FakeConfig())  # type: ignore[arg-type]
    assert get("watchNamespaces") == ["a"] and get("replicas") == "2"
    assert get("resources") == {"limits": {"memory": "1Gi"}}
    assert get("namespace") == "123" and get("missing") is None


# ---- hub.enabled: the JupyterHub the stack installs ----------------------------------------


def test_hub_enabled_defaults_to_the_operators_namespace_and_the_example_template():
    s = settings(hub={"enabled": True, "image": "hub:1"}, singleuser={"image": "nb:1"})
    assert s.hub_install and s.hub_namespace == s.namespace
    assert s.watch_namespaces == (s.namespace,)  # the hub's users, least privilege
    assert s.example_template_namespace == s.namespace
    values = hub.hub_values(s, s.example_template_namespace, "default-template")
    assert values["spawner"] == {"namespace": s.namespace, "hub_namespace": s.namespace,
                                 "template_name": "default-template",
                                 "template_namespace": s.namespace}
    assert values["hubConnectUrl"] == f"http://hub.{s.namespace}.svc.cluster.local:8081"
    template = hub.example_template_image(
        manifests.example_template(s.namespace), s)
    assert template["spec"]["pods"][0]["spec"]["containers"][0]["image"] == "nb:1"
    assert not settings().hub_install


def test_hub_settings_errors_name_the_dotted_key():
    with pytest.raises(SettingsError, match=r"proxy\.service\.type"):
        settings(hub={"enabled": True}, proxy={"service": {"type": "Ingress"}})
    with pytest.raises(SettingsError, match=r"hub\.config"):
        settings(hub={"enabled": True, "config": {"JupyterHub": 1}})
    with pytest.raises(SettingsError, match=r"cull\.timeout"):
        settings(hub={"enabled": True}, cull={"timeout": 5})


def test_the_hub_config_file_configures_the_spawner_and_lets_hub_config_win(tmp_path,
                                                                            monkeypatch):
    from traitlets.config import Config

    s = settings(hub={"enabled": True, "config": {"JupyterHub": {"admin_access": True},
                                                  "JupyternetesSpawner": {"workers": 3}}},
                 cull={"timeout": 600})
    data = hub.config_map(s, "tpl-ns", "default-template")["data"]
    (tmp_path / "config.json").write_text(data["config.json"])
    monkeypatch.setenv("HUB_CONFIG_JSON", str(tmp_path / "config.json"))
    monkeypatch.setenv("HUB_SHARED_PASSWORD", "pw-123456789")
    c = Config()
    exec(compile(data["jupyterhub_config.py"], "jupyterhub_config.py", "exec"),
         {"get_config": lambda: c})
    assert c.JupyterHub.spawner_class == "jupyternetes"
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == \
        f"http://proxy-api.{s.namespace}.svc.cluster.local:8001"
    assert c.JupyternetesSpawner.template_namespace == "tpl-ns"
    assert c.JupyternetesSpawner.workers == 3
    assert c.JupyterHub.admin_access is True
    assert c.JupyterHub.services[0]["name"] == "idle-culler"
    assert "--timeout=600" in c.JupyterHub.services[0]["command"]


def test_network_policies_let_users_reach_only_the_hub_and_dns():
    s = settings(hub={"enabled": True}, hubUserNamespace="users")
    policies = hub.network_policies(s)
    user = policies["singleuser"]
    assert user["metadata"]["namespace"] == "users"
    assert user["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = user["spec"]["egress"]
    assert egress[0]["to"][0]["podSelector"]["matchLabels"] == hub.selector("hub")
    assert egress[1] == hub.DNS_EGRESS and len(egress) == 2  # no internet by default
    # Only the proxy and the hub may connect to a user's server (not another user's server).
    sources = user["spec"]["ingress"][0]["from"]
    assert [p["podSelector"]["matchLabels"] for p in sources] == \
        [hub.selector("proxy"), hub.selector("hub")]
    # The proxy's API: the hub only.
    assert policies["proxy"]["spec"]["ingress"][1]["from"] == [
        {"podSelector": {"matchLabels": hub.selector("hub")}}]


@pulumi.runtime.test
def test_program_declares_the_hub_with_enabled(monitor):
    s = settings(hub={"enabled": True, "image": "hub:1"})
    declared = deploy.declare_all(s)

    def check(_):
        reqs = monitor.by_name()
        for name in ("hub/deployment/hub", "hub/deployment/proxy"):
            assert reqs[name].type == "kubernetes:apps/v1:Deployment"
        assert reqs["hub/service/proxy-public"].type == "kubernetes:core/v1:Service"
        assert reqs["hub/pvc"].type == "kubernetes:core/v1:PersistentVolumeClaim"
        assert reqs["hub/networkpolicy/singleuser"].type == \
            "kubernetes:networking.k8s.io/v1:NetworkPolicy"
        secret = reqs["hub/secret"]
        assert list(secret.ignoreChanges) == ["stringData", "data"]
        assert wire(secret)["stringData"][hub.PASSWORD_KEY][SECRET_SIG]
        assert wire(reqs["hub/deployment/hub"])["spec"]["template"]["spec"][
            "serviceAccountName"] == "hub"
        assert "hub-role/jupyternetes/jupyternetes-hub" in reqs
        for name in ("hub/secret", "hub/configmap", "hub/pvc", "hub/deployment/hub"):
            assert urn(monitor, "namespace") in reqs[name].dependencies, name

    return pulumi.Output.all(*[r.urn for r in declared.values()]).apply(check)
