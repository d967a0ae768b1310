"""`jupyternetes lint TEMPLATE.yaml [-i INSTANCE.yaml]`: find what would fail before anyone spawns.

1. Offline: the template parses (crd/model.py), renders for a sample instance (every variable the
   spawner sends, hubvars.sample_variables, with placeholder values; or the instance given with
   -i), and rendered labels/annotations are valid (render/objects.py); the operator's trust rules
   (policy/trust.py) with the same flags it runs with: the instance's namespace may use the
   template, every otherResources kind is allowed.
2. With a cluster: every rendered object is sent to the apiserver as a server-side dry-run
   create (`dryRun=All`): validation, defaulting and admission run, nothing is stored. A field
   the apiserver rejects is reported with its path in the template and the apiserver's message.
   Without a reachable cluster the offline checks run alone, and the output says so.

Exit code: 0 clean, 1 problems found, 2 the command could not run (unreadable file...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import HUB_USER_ANNOTATION
from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.policy import trust
from jupyternetes.render import hubvars
from jupyternetes.render.objects import RenderedObject, render
from jupyternetes.render.placeholders import RenderError
from jupyternetes.spawner import ksnames

EXIT_PROBLEMS = 1
EXIT_ERROR = 2


@dataclass(frozen=True)
class Problem:
    where: str  # template path, e.g. spec.pods[notebook].spec.containers[0].name
    message: str
    source: str  # offline | apiserver

    def to_dict(self) -> dict[str, str]:
        return {"path": self.where, "message": self.message, "source": self.source}


def sample_instance(template: Template, namespace: str) -> Instance:
    """The instance a spawner would create for user `jovyan` with this template."""
    variables = {**hubvars.sample_variables(hubvars.SAMPLE_INSTANCE, namespace),
                 **ksnames.variables(hubvars.SAMPLE_USER, "")}
    return Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": hubvars.SAMPLE_INSTANCE, "namespace": namespace,
                     "annotations": {HUB_USER_ANNOTATION: hubvars.SAMPLE_USER}},
        "spec": {"template": {"name": template.name,
                              "namespace": template.namespace or namespace},
                 "variables": variables}},
        "sample instance")


# The apiserver's quantity grammar (k8s.io/apimachinery resource.Quantity). A quantity it cannot
# parse fails the object's decoding, and that error names no field: checked here to give a path.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def quantity_problems(obj: RenderedObject) -> list[Problem]:
    """Requests/limits of a pod's containers and a PVC's storage that are not quantities."""
    spec = obj.manifest.get("spec") or {}
    base = f"spec.{obj.group}[{obj.entry}].spec"
    found: list[tuple[str, Any]] = []
    if obj.kind == "Pod":
        for field in ("initContainers", "containers"):
            for index, container in enumerate(spec.get(field) or []):
                for what in ("requests", "limits"):
                    values = ((container or {}).get("resources") or {}).get(what) or {}
                    found += [(f"{base}.{field}[{index}].resources.{what}.{name}", value)
                              for name, value in values.items()]
    elif obj.kind == "PersistentVolumeClaim":
        for what in ("requests", "limits"):
            values = (spec.get("resources") or {}).get(what) or {}
            found += [(f"{base}.resources.{what}.{name}", value) for name, value in values.items()]
    return [Problem(path, f"{value!r} is not a Kubernetes quantity (like 500m, 2, 1Gi, 1G)",
                    "offline")
            for path, value in found
            if not (isinstance(value, int | float) or (isinstance(value, str)
                                                        and _QUANTITY.match(value)))]


def template_path(obj: RenderedObject, field: str) -> str:
    """Apiserver field path of a rendered object -> path in the template (`spec.x` of a pod
    entry `notebook` -> `spec.pods[notebook].spec.x`); metadata fields point at the entry."""
    base = f"spec.{obj.group}[{obj.entry}]"
    field = field.strip()
    if not field:
        return base
    if field.startswith("metadata.labels") or field.startswith("metadata.annotations"):
        return f"{base}.{field[len('metadata.'):]}"
    if field.startswith("metadata"):
        return f"{base}.name"
    return f"{base}.{field}"


def status_problems(obj: RenderedObject, body: Any) -> list[Problem]:
    """Problems from an apiserver Status: one per cause (with its field), else its message."""
    try:
        status = json.loads(body) if isinstance(body, str | bytes) else dict(body or {})
    except ValueError:
        return [Problem(template_path(obj, ""), str(body), "apiserver")]
    causes = ((status.get("details") or {}).get("causes")) or []
    what = f"{obj.kind} {obj.name}"
    if causes:
        return [Problem(template_path(obj, c.get("field") or ""),
                        f"{what}: {c.get('message') or c.get('reason')}", "apiserver")
                for c in causes]
    return [Problem(template_path(obj, ""), f"{what}: {status.get('message') or body}",
                    "apiserver")]


class DryRun:
    """Server-side dry-run creates through one dynamic client (discovery cached)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes.dynamic import DynamicClient

        from jupyternetes.kube.client import api_client

        self.client = DynamicClient(api_client(kubeconfig, context))

    def create(self, obj: RenderedObject) -> list[Problem]:
        from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

        try:
            resource = self.client.resources.get(api_version=obj.api_version, kind=obj.kind)
        except ResourceNotFoundError:
            return [Problem(f"spec.{obj.group}[{obj.entry}]",
                            f"the cluster has no {obj.kind} in {obj.api_version} (is its CRD "
                            "installed?)", "apiserver")]
        try:
            resource.create(body=obj.manifest, namespace=obj.namespace, dry_run="All")
        except DynamicApiError as exc:
            if exc.status == 409:
                return []  # the sample's object exists: the name is taken, the body is fine
            return status_problems(obj, exc.body)
        return []


def trust_problems(template: Template, instance: Instance, rendered: Any,
                   policy: trust.TrustPolicy) -> list[Problem]:
    """What the operator would refuse (TemplateNotAllowed, KindNotAllowed), as problems."""
    problems: list[Problem] = []
    try:
        trust.check_template_use(template, instance)
    except trust.TrustError as exc:
        problems.append(Problem("spec.allowedNamespaces", str(exc), "offline"))
    for message in trust.kind_problems(rendered.objects(), policy):
        where, _, why = message.partition(": ")
        problems.append(Problem(where.split(" ")[0], why, "offline"))
    return problems


def lint(template: Template, instance: Instance, dry_run: DryRun | None,
         policy: trust.TrustPolicy | None = None) -> list[Problem]:
    try:
        rendered = render(template, instance)
    except RenderError as exc:
        if exc.missing:
            return [Problem(path, f"unknown placeholder {{{name}}}: not a variable the spawner "
                            "sends, nor a built-in; add it to the instance's spec.variables "
                            "(with -i), or fix its name", "offline")
                    for name, path in exc.missing]
        return [Problem("spec", str(exc), "offline")]
    problems = trust_problems(template, instance, rendered, policy or trust.TrustPolicy())
    problems += [p for obj in rendered.objects() for p in quantity_problems(obj)]
    if dry_run is not None:
        for obj in rendered.objects():
            problems.extend(dry_run.create(obj))
    return problems


def connect(args: argparse.Namespace) -> tuple[DryRun | None, str]:
    """(dry-run client, why not) — None when there is no cluster to ask."""
    if args.offline:
        return None, "--offline"
    try:
        dry_run = DryRun(args.kubeconfig, args.context)
    except Exception as exc:  # no kubeconfig, no service account, unreachable discovery
        return None, " ".join(str(exc).split())[:200] or type(exc).__name__
    return dry_run, ""


def run_lint(args: argparse.Namespace) -> int:
    from jupyternetes.app.cli import InputError, load_document

    try:
        doc, source = load_document(args.template_file, "template")
        if isinstance(doc, Mapping) and not (doc.get("metadata") or {}).get("namespace"):
            doc = {**doc, "metadata": {**(doc.get("metadata") or {}),
                                       "namespace": args.namespace or "default"}}
        template = Template.from_dict(doc, source)
        if args.instance:
            inst_doc, inst_source = load_document(args.instance, "instance")
            instance = Instance.from_dict(inst_doc, inst_source)
        else:
            instance = sample_instance(template, args.namespace or template.namespace
                                       or "default")
    except (InputError, ModelError) as exc:
        print(f"jupyternetes lint: error: {exc}", file=sys.stderr)
        return EXIT_ERROR if isinstance(exc, InputError) else EXIT_PROBLEMS
    try:
        policy = trust.policy_from_args(args)
    except ValueError as exc:
        print(f"jupyternetes lint: error: {trust.KIND_FLAG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    dry_run, why_not = connect(args)
    problems = lint(template, instance, dry_run, policy)
    checks = "offline checks and server-side dry run" if dry_run else (
        f"offline checks only; no cluster: {why_not}")
    if args.output == "json":
        sys.stdout.write(json.dumps({"template": source, "checks": checks,
                                     "instance": f"{instance.namespace}/{instance.name}",
                                     "problems": [p.to_dict() for p in problems]},
                                    indent=2) + "\n")
    else:
        for problem in problems:
            print(f"{source}: {problem.where}: {problem.message}")
        verdict = f"{len(problems)} problem(s)" if problems else "ok"
        print(f"{source}: {verdict} ({checks}; rendered for instance "
              f"{instance.namespace}/{instance.name})")
    return EXIT_PROBLEMS if problems else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lint", help="check a template renders and the apiserver accepts its objects",
        description="Render a template for a sample instance (the variables JupyterHub's "
                    "spawner sends, with placeholder values) and send every object to the "
                    "apiserver as a server-side dry run, reporting each rejected field with "
                    "its template path and the apiserver's message.")
    parser.add_argument("template_file", metavar="TEMPLATE.yaml", help="template file ('-': stdin)")
    parser.add_argument("-i", "--instance", metavar="INSTANCE.yaml",
                        help="render for this instance instead of the sample one")
    parser.add_argument("-n", "--namespace", default=None,
                        help="namespace of the sample instance (must exist for the dry run; "
                             "default: the template's own, else default)")
    parser.add_argument("--offline", action="store_true", help="do not ask a cluster")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    trust.add_arguments(parser)
    parser.set_defaults(func=run_lint)
