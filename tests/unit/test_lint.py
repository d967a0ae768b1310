"""admin/lint.py offline: the sample instance, placeholder paths, apiserver Status -> template
paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.examples import load_example
from jupyternetes.admin.lint import lint, sample_instance, status_problems, template_path
from jupyternetes.crd.model import Template
from jupyternetes.policy.trust import TrustPolicy
from jupyternetes.render import hubvars
from jupyternetes.render.objects import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_sample_variables_are_every_name_the_spawner_sends() -> None:
    variables = hubvars.sample_variables()
    for name in ("jupyterhub.api_token", "jupyterhub.namespace", "jupyterhub.oauth_client_id",
                 "jupyterhub.user.id", "jupyterhub.user.name", "jupyterhub.server.name",
                 "jupyternetes.instance.name", "jupyternetes.instance.namespace"):
        assert name in variables
    assert variables["jupyterhub.user.id"].isdigit()
    assert {f"jupyterhub.env.{n}" for n in hubvars.HUB_ENV_NAMES} <= set(variables)
    assert "jupyterhub.env.JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES" in variables


def test_seed_and_service_templates_render_for_the_sample_instance() -> None:
    services = TrustPolicy.from_flags(["services", "configmaps"])
    for name in ("seed-template.yaml", "service-template.yaml"):
        template = Template.from_dict(load_example(name))
        ns = template.namespace or "default"
        assert lint(template, sample_instance(template, ns), None, services) == []
        render(template, sample_instance(template, ns))


def test_lint_shows_the_operators_trust_refusals() -> None:
    template = Template.from_dict(load_example("service-template.yaml"))
    problems = lint(template, sample_instance(template, "default"), None)
    assert [p.where for p in problems] == ["spec.otherResources[http]",
                                           "spec.otherResources[settings]"]
    assert "--other-resource-kind services" in problems[0].message
    seed = Template.from_dict(load_example("seed-template.yaml"))
    problems = lint(seed, sample_instance(seed, "users"), None)
    assert [p.where for p in problems] == ["spec.allowedNamespaces"]
    assert "may not be used from namespace users" in problems[0].message


def test_unknown_placeholder_is_reported_with_its_path() -> None:
    doc = load_example("seed-template.yaml")
    doc["spec"]["pods"][0]["spec"]["containers"][0]["image"] = "{hub.image}"
    template = Template.from_dict(doc)
    problems = lint(template, sample_instance(template, "default"), None)
    assert [p.where for p in problems] == ["spec.pods[notebook].spec.containers[0].image"]
    assert "{hub.image}" in problems[0].message


def test_apiserver_causes_map_to_template_paths() -> None:
    template = Template.from_dict(load_example("seed-template.yaml"))
    pod = render(template, sample_instance(template, "default")).pods[0]
    body = json.dumps({"kind": "Status", "message": "Pod is invalid", "details": {"causes": [
        {"reason": "FieldValueInvalid", "field": "spec.containers[0].name",
         "message": "Invalid value: \"Note_Book\": a lowercase RFC 1123 label must..."}]}})
    problems = status_problems(pod, body)
    assert problems[0].where == "spec.pods[notebook].spec.containers[0].name"
    assert "Note_Book" in problems[0].message and problems[0].source == "apiserver"
    assert template_path(pod, "metadata.labels") == "spec.pods[notebook].labels"
    assert template_path(pod, "metadata.name") == "spec.pods[notebook].name"


def test_cli_offline_says_so_and_exits_by_result(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "jupyternetes.app.cli", "lint", "--offline",
                         str(EXAMPLES / "seed-template.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "offline checks only" in ok.stdout
    bad = load_example("seed-template.yaml")
    bad["spec"]["pods"][0]["labels"]["x"] = "{nope}"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(bad))
    failed = subprocess.run([sys.executable, "-m", "jupyternetes.app.cli", "lint", "--offline",
                             str(path)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "spec.pods[notebook].labels.x" in failed.stdout


def test_quantities_are_checked_offline_with_their_path() -> None:
    doc = load_example("seed-template.yaml")
    doc["spec"]["pods"][0]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "lots", "memory": "1Gi"}, "requests": {"cpu": 0.5}}
    doc["spec"]["pvcs"][0]["spec"]["resources"]["requests"]["storage"] = "1 GB"
    template = Template.from_dict(doc)
    problems = lint(template, sample_instance(template, "kadense"), None)
    assert [p.where for p in problems] == [
        "spec.pvcs[workspace].spec.resources.requests.storage",
        "spec.pods[notebook].spec.containers[0].resources.limits.cpu"]
