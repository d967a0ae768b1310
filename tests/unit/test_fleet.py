"""admin/fleet.py + fleetpreview.plan_fleet: classifying a template edit for every instance,
purely."""

from __future__ import annotations

import copy
import json

from harness.examples import load_example, shared_template
from jupyternetes.admin import fleet
from jupyternetes.admin.fleetpreview import baseline_from_live, live_objects_of, plan_fleet
from jupyternetes.crd.model import Instance, Template
from jupyternetes.policy import pvc
from jupyternetes.render.objects import render

REF = "kadense/default-template"


def seed_template(generation: int = 4) -> dict:
    doc = shared_template(load_example("seed-template.yaml"))
    doc["metadata"]["generation"] = generation
    return doc


def instance(name: str, generation: int | None = 4, up: bool = True,
             variables: dict | None = None) -> dict:
    doc = load_example("seed-instance.yaml")
    doc["metadata"]["name"] = name
    doc["spec"]["variables"]["jupyternetes.instance.name"] = name
    doc["spec"]["variables"].update(variables or {})
    doc["status"] = ({"stack": {"desiredHash": "sha256:x", "templateGeneration": generation,
                                "lastUpdate": {"result": "succeeded"}}} if up else {})
    return doc


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["pods"][0]["spec"]


def plan(proposed: dict, instances: list[dict], live: dict | None = None,
         live_objects: dict | None = None, expandable: dict | None = None
         ) -> fleet.FleetSummary:
    return plan_fleet(REF, Template.from_dict(live or seed_template()),
                      Template.from_dict(proposed), instances, live_objects, expandable or {})


def test_unchanged_template_is_unchanged_for_everyone() -> None:
    summary = plan(seed_template(), [instance("a"), instance("b")])
    assert summary.counts()[fleet.UNCHANGED] == 2
    assert not summary.has_changes


def test_image_change_replaces_every_pod_and_names_the_path() -> None:
    proposed = seed_template(5)
    pod_spec(proposed)["containers"][0]["image"] = "quay.io/jupyter/base-notebook:latest"
    summary = plan(proposed, [instance("a"), instance("b")])
    assert summary.counts()[fleet.POD_REPLACED] == 2
    obj = next(o for o in summary.plans[0].objects if o.group == "pods")
    assert obj.paths == ("spec.containers[0].image",)
    text = fleet.format_summary(summary)
    assert "pod-replaced        2" in text and "kernel is lost" in text


def test_label_change_is_an_update_in_place() -> None:
    proposed = seed_template(5)
    proposed["spec"]["pods"][0]["labels"]["team"] = "data"
    summary = plan(proposed, [instance("a")])
    assert summary.plans[0].outcome == fleet.UPDATE
    assert summary.plans[0].objects[1].paths == ('metadata.labels.team',)


def test_renamed_variable_is_a_render_error_naming_the_variable_per_user() -> None:
    proposed = seed_template(5)
    pod_spec(proposed)["containers"][0]["env"][0]["value"] = "{jupyterhub.token}"
    summary = plan(proposed, [instance("a"), instance("b", variables={
        "jupyterhub.token": "t"})])
    by_key = {p.key: p for p in summary.plans}
    assert by_key["default/a"].outcome == fleet.RENDER_ERROR
    assert ("jupyterhub.token",
            "spec.pods[notebook].spec.containers[0].env[0].value") in by_key["default/a"].missing
    assert by_key["default/b"].outcome == fleet.POD_REPLACED
    assert "missing jupyterhub.token" in fleet.format_summary(summary)


def test_pvc_growth_depends_on_the_storage_class() -> None:
    proposed = seed_template(5)
    proposed["spec"]["pvcs"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert plan(proposed, [instance("a")], expandable={None: True}).plans[0].outcome == \
        fleet.PVC_EXPAND
    refused = plan(proposed, [instance("a")], expandable={None: False}).plans[0]
    assert refused.outcome == fleet.PVC_KEPT
    assert "does not allow volume expansion" in refused.objects[0].note


def test_pvc_shrink_and_immutable_fields_keep_the_claim() -> None:
    shrink = seed_template(5)
    shrink["spec"]["pvcs"][0]["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert plan(shrink, [instance("a")], expandable={None: True}).plans[0].objects[0].note == \
        "a claim never shrinks: the larger claim is used"
    modes = seed_template(5)
    modes["spec"]["pvcs"][0]["spec"]["accessModes"] = ["ReadWriteMany"]
    result = plan(modes, [instance("a")], expandable={None: True}).plans[0]
    assert result.outcome == fleet.PVC_KEPT and "immutable" in result.objects[0].note


def test_renamed_pvc_entry_is_a_new_claim_and_the_old_one_is_kept() -> None:
    proposed = seed_template(5)
    proposed["spec"]["pvcs"][0]["name"] = "home"
    pod_spec(proposed)["volumes"][0]["persistentVolumeClaim"]["claimName"] = \
        "{jupyternetes.pvcs.home}"
    result = plan(proposed, [instance("a")]).plans[0]
    outcomes = {(o.group, o.entry): o.outcome for o in result.objects}
    assert outcomes[("pvcs", "workspace")] == fleet.DELETE
    assert outcomes[("pvcs", "home")] == fleet.CREATE
    assert outcomes[("pods", "notebook")] == fleet.POD_REPLACED
    renamed = fleet.classify_object("pvcs", "w", {"kind": "PersistentVolumeClaim",
                                                  "metadata": {"name": "old"}},
                                    {"kind": "PersistentVolumeClaim",
                                     "metadata": {"name": "new"}})
    assert renamed.outcome == fleet.PVC_NEW_CLAIM and "old is kept" in renamed.note


def test_not_running_instance_is_a_create() -> None:
    result = plan(seed_template(), [instance("a", up=False)]).plans[0]
    assert result.outcome == fleet.CREATE and result.baseline == "not running"


def test_instance_on_an_older_generation_is_compared_with_its_live_objects() -> None:
    live_doc = seed_template(6)
    pod_spec(live_doc)["containers"][0]["image"] = "new:1"
    inst = instance("a", generation=4)  # still runs generation 4 (old image)
    old_render = render(Template.from_dict(seed_template(4)),
                        Instance.from_dict(inst))
    listed = []
    for obj in old_render.objects():
        live = copy.deepcopy(obj.manifest)
        live["metadata"]["uid"] = "u"
        live["metadata"]["annotations"]["pulumi.com/skipAwait"] = "true"
        live["status"] = {"phase": "Running"}
        if obj.group == "pods":
            live["spec"]["dnsPolicy"] = "ClusterFirst"  # an apiserver default
            live["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
        listed.append(live)
    live_objects = live_objects_of(listed)
    # Without -f: the live template against what the server runs now.
    summary = plan(live_doc, [inst], live=live_doc, live_objects=live_objects)
    result = summary.plans[0]
    assert result.baseline == "live" and result.running_generation == 4
    assert result.outcome == fleet.POD_REPLACED
    pod = next(o for o in result.objects if o.group == "pods")
    assert pod.paths == ("spec.containers[0].image",)
    # The same template as it runs: nothing (defaults and Pulumi's annotations are ignored).
    same = plan(seed_template(4), [inst], live=live_doc, live_objects=live_objects).plans[0]
    assert same.outcome == fleet.UNCHANGED, same


def test_instances_of_other_templates_are_left_out() -> None:
    other = instance("x")
    other["spec"]["template"]["name"] = "another"
    assert plan(seed_template(), [other, instance("a")]).to_dict()["instances"] == 1


def test_quantities() -> None:
    assert pvc.quantity("1Gi") == 2**30
    assert pvc.quantity("1G") == 10**9
    assert pvc.quantity("1e3") == 1000
    assert pvc.quantity("1Gb") is None
    assert pvc.quantity("x") is None


def test_projection_keeps_only_the_shape() -> None:
    assert fleet.project({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}, {"b": {"c": 0}}) == \
        {"b": {"c": 2}}
    assert baseline_from_live([], [{"group": "otherResources", "entry": "s",
                                    "manifest": {}}], []) == \
        [{"group": "otherResources", "entry": "s", "manifest": {}}]


def test_projection_matches_named_items_by_name() -> None:
    live = {"volumes": [{"name": "w", "pvc": 1}, {"name": "kube-api-access-x", "projected": 1}]}
    assert fleet.project(live, {"volumes": [{"name": "w", "pvc": 0}]}) == \
        {"volumes": [{"name": "w", "pvc": 1}]}
    # A named item the template has and the live object lacks stays a difference.
    assert fleet.project(live, {"volumes": [{"name": "other"}]}) == {"volumes": []}


def test_summary_says_which_instances_also_lose_their_pod() -> None:
    proposed = seed_template(5)
    pod_spec(proposed)["containers"][0]["image"] = "new:1"
    proposed["spec"]["pvcs"][0]["spec"]["accessModes"] = ["ReadWriteMany"]
    summary = plan(proposed, [instance("a"), instance("b")])
    assert summary.counts()[fleet.PVC_KEPT] == 2
    assert summary.touched()[fleet.POD_REPLACED] == 2
    text = fleet.format_summary(summary)
    assert "Instances with at least one object that is: pod-replaced 2" in text


def test_preview_with_a_template_file_and_no_instance_says_what_to_give(capsys) -> None:
    from harness.examples import EXAMPLES
    from jupyternetes.app.cli import main

    assert main(["preview", "-t", str(EXAMPLES / "seed-template.yaml")]) == 2
    err = capsys.readouterr().err
    assert "give the instance with -i INSTANCE.yaml, or NAMESPACE/NAME" in err
    assert main(["preview", "--template", "not-a-ref"]) == 2
    assert "must be written NAMESPACE/NAME" in capsys.readouterr().err


def test_variables_from_secrets_render_like_the_operator_renders_them() -> None:
    import base64

    with_secret = instance("a")
    token = with_secret["spec"]["variables"].pop("jupyterhub.api_token")
    with_secret["spec"]["variablesFrom"] = [{"secretRef": {"name": "a-hub"}}]
    missing = instance("b")
    missing["spec"]["variables"].pop("jupyterhub.api_token")
    missing["spec"]["variablesFrom"] = [{"secretRef": {"name": "b-hub"}}]
    secrets = {("default", "a-hub"): {"data": {
        "jupyterhub.api_token": base64.b64encode(token.encode()).decode()}}}
    summary = plan_fleet(REF, Template.from_dict(seed_template()),
                         Template.from_dict(seed_template()), [with_secret, missing], None, {},
                         secrets)
    by_key = {p.key: p for p in summary.plans}
    assert by_key["default/a"].outcome == fleet.UNCHANGED
    assert by_key["default/b"].outcome == fleet.RENDER_ERROR
    assert "Secret default/b-hub" in by_key["default/b"].error
    assert token not in json.dumps(summary.to_dict())


def test_other_objects_of_listed_kinds_come_from_the_cluster() -> None:
    service = {"group": "otherResources", "entry": "svc",
               "manifest": {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "a-svc"}, "spec": {"ports": [{"port": 80}]}}}
    live = [{**service, "manifest": {**service["manifest"],
                                     "spec": {"ports": [{"port": 80, "protocol": "TCP"}],
                                              "clusterIP": "198.19.0.1"}}}]
    listed = {"Pod", "PersistentVolumeClaim", "Service"}
    assert baseline_from_live(live, [service], [service], listed) == [service]
    # Listed and absent: the Service is gone from the cluster (a create), not taken from render.
    assert baseline_from_live([], [service], [service], listed) == []
    # Not listable: compared with the live template's render.
    assert baseline_from_live([], [service], [service]) == [service]


def test_a_pinned_instance_is_unchanged_by_any_edit() -> None:
    proposed = seed_template()
    pod_spec(proposed)["containers"][0]["image"] = "quay.io/jupyter/base-notebook:new"
    pinned = instance("pinned")
    pinned["metadata"]["annotations"] = {"jupyternetes.kadense.io/template-revision": "3"}
    summary = plan(proposed, [instance("other"), pinned])
    outcomes = {p.key.split("/")[1]: (p.outcome, p.baseline) for p in summary.plans}
    assert outcomes == {"other": ("pod-replaced", "render"),
                        "pinned": ("unchanged", "pinned to revision 3")}
