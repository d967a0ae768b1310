"""Migration from KubeSpawner (issue 20, section 5): KubeSpawner's names, the template's
kubespawner-claim entry, the adoption rule, and `jupyternetes migrate-kubespawner`."""

from __future__ import annotations

import io
import sys

import pytest
import yaml

from jupyternetes.admin import migrate
from jupyternetes.app import cli
from jupyternetes.crd.labels import (
    HUB_SERVER_ANNOTATION,
    HUB_USER_ANNOTATION,
    KUBESPAWNER_CLAIM,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    RELEASED_FROM,
)
from jupyternetes.crd.model import Instance, Template
from jupyternetes.policy import ownership
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError
from jupyternetes.spawner import ksnames

# ---- KubeSpawner's names (expected values computed with jupyterhub-kubespawner 7.1.0's
# kubespawner.slugs and KubeSpawner._expand_user_properties) -----------------------------------

KS_710 = [
    # user, server, {username}, {user_server}, {escaped_username}, {escaped_user_server}
    ("alice", "", "alice", "alice", "alice", "alice"),
    ("alice", "srv", "alice", "alice--srv", "alice", "alice--srv"),
    ("alice", "My Server", "alice", "alice--my-server---c2d9a82f", "alice",
     "alice---4dy-20-53erver"),
    ("user@example.com", "", "user-example-com---b4c9a289", "user-example-com---b4c9a289",
     "user-40example-2ecom", "user-40example-2ecom"),
    ("user@example.com", "My Server", "user-example-com---b4c9a289",
     "user-example-com--my-server---ba23eb8d", "user-40example-2ecom",
     "user-40example-2ecom---4dy-20-53erver"),
    ("x" * 40, "My Server", "x" * 40, "xxxxxxxxxxxxxxxxx--my-server---4cdeeb73", "x" * 40,
     "x" * 40 + "---4dy-20-53erver"),
]


@pytest.mark.parametrize("user,server,username,user_server,escaped,escaped_us", KS_710)
def test_kubespawner_names_match_kubespawner_7_1_0(user, server, username, user_server,
                                                   escaped, escaped_us):
    fields = ksnames.fields(user, server)
    assert (fields["username"], fields["user_server"], fields["escaped_username"],
            fields["escaped_user_server"]) == (username, user_server, escaped, escaped_us)
    assert ksnames.variables(user, server)["jupyterhub.kubespawner.user_server"] == user_server


def test_kubespawner_safe_slug_never_collides_with_a_hashed_name():
    assert ksnames.safe_slug("a--b") != "a--b" and ksnames.safe_slug("a--b").count("---") == 1
    assert ksnames.safe_slug("1abc").startswith("x-1abc---")


# ---- the template's kubespawner-claim entry --------------------------------------------------


def _template(claim: str = "claim-{jupyterhub.kubespawner.user_server}") -> Template:
    return Template.from_dict({
        "apiVersion": "kadense.io/v1", "kind": "JupyterNotebookTemplate",
        "metadata": {"name": "t", "namespace": "hub"},
        "spec": {"pvcs": [{"name": "home", "annotations": {
            KUBESPAWNER_CLAIM: claim, HUB_USER_ANNOTATION: "forged"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
            "pods": [{"name": "nb", "spec": {"volumes": [{"name": "h", "persistentVolumeClaim": {
                "claimName": "{jupyternetes.pvcs.home}"}}], "containers": [{"name": "c"}]}}]}})


def _instance(user: str | None = "alice", server: str = "") -> Instance:
    annotations = {}
    if user is not None:
        annotations[HUB_USER_ANNOTATION] = user
        annotations[HUB_SERVER_ANNOTATION] = server
    return Instance.from_dict({
        "apiVersion": "kadense.io/v1", "kind": "JupyterNotebookInstance",
        "metadata": {"name": "i1", "namespace": "hub", "annotations": annotations,
                     "labels": {LABEL_ACCOUNT: "acc1"}},
        "spec": {"template": {"name": "t"},
                 "variables": ksnames.variables(user or "x", server)}})


def test_the_entry_gets_kubespawners_claim_name_and_the_instances_user():
    rendered = render(_template(), _instance())
    claim = rendered.pvcs[0].manifest
    assert claim["metadata"]["name"] == "claim-alice"
    assert rendered.pods[0].manifest["spec"]["volumes"][0]["persistentVolumeClaim"][
        "claimName"] == "claim-alice"
    # The owner comes from the instance, never from the template's annotations.
    assert claim["metadata"]["annotations"][HUB_USER_ANNOTATION] == "alice"
    assert ownership.kubespawner_request(claim) == ("alice", "")
    named = render(_template(), _instance(server="lab")).pvcs[0].manifest
    assert named["metadata"]["name"] == "claim-alice--lab"
    assert ownership.kubespawner_request(named) == ("alice", "lab")


def test_the_entry_needs_a_hub_instance_and_a_valid_name():
    with pytest.raises(RenderError, match="needs an instance made by the hub"):
        render(_template(), _instance(user=None))
    with pytest.raises(RenderError, match="cannot be filled"):
        render(_template("claim-{nope}"), _instance())
    with pytest.raises(RenderError, match="not a valid claim name"):
        render(_template("Claim_{jupyterhub.kubespawner.username}"), _instance())


# ---- the adoption rule -----------------------------------------------------------------------


def _ks_claim(user: str = "alice", server: str | None = None, **labels: str) -> dict:
    annotations = {HUB_USER_ANNOTATION: user, "hub.jupyter.org/kubespawner-version": "7.1.0"}
    if server:
        annotations[HUB_SERVER_ANNOTATION] = server
    return {"kind": "PersistentVolumeClaim", "metadata": {
        "name": "claim-alice", "namespace": "hub", "annotations": annotations,
        "labels": {"component": "singleuser-storage", **labels}}}


def test_kubespawner_claim_of_the_same_user_and_server_is_adopted():
    assert ownership.conflict(_ks_claim(), "hub", "i1", "pvcs/home", "acc1",
                              ("alice", "")) is None
    assert ownership.conflict(_ks_claim(server="lab"), "hub", "i1", "pvcs/home", "acc1",
                              ("alice", "lab")) is None


@pytest.mark.parametrize("claim,why", [
    (_ks_claim(user="bob"), "annotation is 'bob', not this server's user 'alice'"),
    (_ks_claim(server="lab"), "claim of server 'lab'"),
    (_ks_claim(**{LABEL_ACCOUNT: "acc0"}), "bound to an account"),
    ({"kind": "PersistentVolumeClaim", "metadata": {"name": "claim-alice", "annotations": {
        RELEASED_FROM: "{}", HUB_USER_ANNOTATION: "alice"}}}, "released"),
    ({"kind": "PersistentVolumeClaim", "metadata": {"name": "claim-alice"}},
     "no hub.jupyter.org/username annotation"),
])
def test_no_other_claim_is_adopted_as_kubespawners(claim, why):
    found = ownership.conflict(claim, "hub", "i1", "pvcs/home", "acc1", ("alice", ""))
    assert found is not None and why in found.message


def test_without_the_entrys_request_a_kubespawner_claim_is_not_adopted():
    assert ownership.conflict(_ks_claim(), "hub", "i1", "pvcs/home", "acc1") is not None


def test_another_instances_claim_stays_refused_even_when_requested():
    theirs = _ks_claim(**{LABEL_INSTANCE: "i2", LABEL_INSTANCE_NAMESPACE: "hub"})
    found = ownership.conflict(theirs, "hub", "i1", "pvcs/home", "acc1", ("alice", ""))
    assert found is not None and "belongs to instance hub/i2" in found.message


# ---- migrate-kubespawner ---------------------------------------------------------------------

VALUES = """
singleuser:
  image: {name: jupyter/scipy-notebook, tag: "2024-01-01", pullPolicy: Always}
  cpu: {limit: 2, guarantee: 0.5}
  memory: {limit: 4G, guarantee: 1G}
  extraResource: {limits: {nvidia.com/gpu: "1"}}
  uid: 1001
  fsGid: 100
  nodeSelector: {pool: user}
  extraTolerations: [{key: gpu, operator: Exists}]
  extraLabels: {team: a}
  extraEnv: {EDITOR: vim, GREETING: "hi {username}"}
  storage:
    capacity: 20Gi
    homeMountPath: /home/jovyan
    dynamic: {storageClass: standard}
  defaultUrl: /lab
  somethingNew: 1
"""


def test_a_z2jh_singleuser_block_becomes_a_template():
    block = migrate.singleuser_block(yaml.safe_load(VALUES))
    doc, notes = migrate.template_from_singleuser(block, "ks", "hub", ("*",))
    template = Template.from_dict(doc)  # a valid template
    pod = doc["spec"]["pods"][0]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "jupyter/scipy-notebook:2024-01-01"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"requests": {"cpu": "0.5", "memory": "1G"},
                                      "limits": {"cpu": "2", "memory": "4G",
                                                 "nvidia.com/gpu": "1"}}
    assert pod["spec"]["securityContext"] == {"runAsUser": 1001, "fsGroup": 100}
    assert pod["spec"]["nodeSelector"] == {"pool": "user"}
    assert pod["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["labels"] == {"team": "a"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GREETING"] == "hi {jupyterhub.user.name}" and env["EDITOR"] == "vim"
    assert env["JUPYTERHUB_API_URL"] == "{jupyterhub.env.JUPYTERHUB_API_URL}"
    assert container["volumeMounts"][0] == {"name": "home", "mountPath": "/home/jovyan"}
    claim = doc["spec"]["pvcs"][0]
    assert claim["annotations"] == {
        KUBESPAWNER_CLAIM: "claim-{jupyterhub.kubespawner.user_server}"}
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert doc["spec"]["allowedNamespaces"] == ["*"]
    assert any("defaultUrl" in n for n in notes) and any("somethingNew" in n for n in notes)
    # It renders for a hub user to KubeSpawner's claim name.
    variables = {**ksnames.variables("alice", ""), "jupyterhub.user.name": "alice",
                 "jupyterhub.server.name": ""}
    variables.update({f"jupyterhub.env.{n}": "x" for n in migrate.HUB_ENV})
    instance = Instance.from_dict({
        "apiVersion": "kadense.io/v1", "kind": "JupyterNotebookInstance",
        "metadata": {"name": "i1", "namespace": "hub",
                     "annotations": {HUB_USER_ANNOTATION: "alice"}},
        "spec": {"template": {"name": "ks"}, "variables": variables}})
    assert render(template, instance).pvcs[0].name == "claim-alice"


def test_legacy_claim_names_and_errors():
    assert migrate.claim_name_template("claim-{username}{servername}", "escape") == (
        "claim-{jupyterhub.kubespawner.escaped_username}"
        "{jupyterhub.kubespawner.escaped_servername}")
    with pytest.raises(migrate.MigrationError, match=r"field \{userid\}"):
        migrate.claim_name_template("claim-{userid}", "safe")
    with pytest.raises(migrate.MigrationError, match=r"storage\.type"):
        migrate.template_from_singleuser({"storage": {"type": "odd"}})
    doc, _ = migrate.template_from_singleuser({"storage": {"type": "none"}})
    assert "pvcs" not in doc["spec"]


def test_the_command_prints_the_template(tmp_path, monkeypatch, capsys):
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    assert cli.main(["migrate-kubespawner", str(values), "--name", "ks",
                     "--namespace", "hub"]) == 0
    out, err = capsys.readouterr()
    doc = yaml.safe_load(out)
    assert doc["kind"] == "JupyterNotebookTemplate" and doc["metadata"]["name"] == "ks"
    assert "note: singleuser.defaultUrl" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("- a list\n"))
    assert cli.main(["migrate-kubespawner", "-"]) == 2
    assert "expected a YAML mapping" in capsys.readouterr().err
