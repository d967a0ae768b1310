"""`jupyternetes preview`: what the operator's next `up` would change for one instance.

`preview NAMESPACE/NAME` reads the instance and its template from the cluster;
`preview -t TEMPLATE.yaml -i INSTANCE.yaml` takes them from files. Either way the objects are
rendered and the instance's stack is previewed against the cluster (refreshed first, so objects
deleted or changed out of band show up), printed per object with the changed fields. What the
operator's trust rules refuse (policy/trust.py, with the flags the operator runs with) is an
error here too, before any engine call.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any

from jupyternetes.admin.fleetpreview import add_fleet_arguments
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import (
    PreviewResult,
    PreviewStep,
    StackConfigError,
    StackEngine,
    add_stack_arguments,
    settings_from_args,
)
from jupyternetes.engine.masking import mask_secrets
from jupyternetes.engine.results import summarize_changes
from jupyternetes.policy import trust
from jupyternetes.render import secretvars
from jupyternetes.render.objects import render

EXIT_CHANGES = 1
EXIT_ERROR = 2

# Operations shown per object; `same` and the bookkeeping steps of a replacement are not.
SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "import": "=",
           "create-replacement": "+-", "delete-replaced": "+-", "discard": "-"}
REPLACEMENT_PARTS = ("create-replacement", "delete-replaced")
DIFF_SYMBOLS = {"add": "+", "add-replace": "+", "delete": "-", "delete-replace": "-",
                "update": "~", "update-replace": "~"}
VALUE_LIMIT = 120


class PreviewError(Exception):
    """One clear line for the admin: what failed and where."""


def format_value(value: Any, secret_values: Collection[str] = ()) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = mask_secrets(text, secret_values)
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 3] + "..."


def visible_steps(steps: Collection[PreviewStep]) -> list[PreviewStep]:
    """Changed objects of the instance, one line each (a replacement's parts folded in)."""
    replaced = {s.urn for s in steps if s.op == "replace"}
    shown: list[PreviewStep] = []
    seen: set[tuple[str, str]] = set()
    for step in steps:
        if step.op not in SYMBOLS or step.type.startswith("pulumi:"):
            continue
        if step.op in REPLACEMENT_PARTS and step.urn in replaced:
            continue
        op = "replace" if step.op in REPLACEMENT_PARTS else step.op
        if (step.urn, op) in seen:
            continue
        seen.add((step.urn, op))
        shown.append(step if op == step.op else PreviewStep(
            op, step.urn, step.type, step.name, step.object_name, step.changed,
            step.detailed_diff))
    return shown


def natural_key(path: str) -> list[Any]:
    """env[2] before env[10]."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def object_summary(steps: Collection[PreviewStep]) -> dict[str, int]:
    """Operation counts over the instance's own objects (one per object, a replacement's parts
    folded in); Pulumi's stack and provider resources are not the user's and not counted."""
    ops: dict[str, str] = {}
    for step in steps:
        if step.type.startswith("pulumi:"):
            continue
        op = "replace" if step.op in REPLACEMENT_PARTS else step.op
        if ops.get(step.urn) in (None, "same") or op == "replace":
            ops[step.urn] = op
    counts: dict[str, int] = {}
    for op in ops.values():
        counts[op] = counts.get(op, 0) + 1
    return counts


def _quantities(resources: Mapping[str, Any]) -> str:
    parts = []
    for what in ("requests", "limits"):
        values = resources.get(what) or {}
        if values:
            parts.append(what + " " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    return "; ".join(parts)


def key_fields(manifest: Mapping[str, Any]) -> list[str]:
    """What a reviewer looks at first in a new object: a pod's images, claims and resources; a
    claim's size, access modes and class; a Service's type and ports; else its top-level keys."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    lines: list[str] = []
    if kind == "Pod":
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            line = f"container {container.get('name')}: image {container.get('image')}"
            resources = _quantities(container.get("resources") or {})
            lines.append(line + (f" ({resources})" if resources else ""))
        claims = [v.get("persistentVolumeClaim", {}).get("claimName")
                  for v in spec.get("volumes") or [] if v.get("persistentVolumeClaim")]
        if claims:
            lines.append("claims: " + ", ".join(str(c) for c in claims))
    elif kind == "PersistentVolumeClaim":
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        lines.append(f"storage {storage}, access {', '.join(spec.get('accessModes') or [])}, "
                     f"class {spec.get('storageClassName') or '(default)'}")
    elif kind == "Service":
        ports = ", ".join(f"{p.get('port')}->{p.get('targetPort', p.get('port'))}"
                          for p in spec.get("ports") or [])
        lines.append(f"type {spec.get('type') or 'ClusterIP'}, ports {ports or '(none)'}")
    else:
        keys = [k for k in manifest if k not in ("apiVersion", "kind", "metadata")]
        if keys:
            lines.append("fields: " + ", ".join(keys))
    return lines


def format_preview(result: PreviewResult, stack: str,
                   secret_values: Collection[str] = (),
                   manifests: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """`manifests`: resource name (`pods/notebook`) -> rendered manifest, to show the key
    fields of objects to be created."""
    lines = [f"Stack {stack}:"]
    steps = visible_steps(result.steps)
    width = max((len(s.name) for s in steps), default=0)
    for step in steps:
        target = f"{step.kind} {step.object_name}" if step.object_name else step.kind
        lines.append(f"  {SYMBOLS[step.op]:<2} {step.op:<8} {step.name:<{width}}  {target}")
        if step.op == "create" and manifests and step.name in manifests:
            lines += [f"       {line}" for line in key_fields(manifests[step.name])]
        if step.op in ("update", "replace"):
            details = step.detailed_diff or {path: {"kind": "update"} for path in step.changed}
            for path in sorted(details, key=natural_key):
                diff = details[path]
                kind = str(diff.get("kind", "update"))
                marker = DIFF_SYMBOLS.get(kind, "~")
                forces = " (forces replacement)" if kind.endswith("-replace") else ""
                if "old" in diff or "new" in diff:
                    change = (f"{format_value(diff.get('old'), secret_values)} -> "
                              f"{format_value(diff.get('new'), secret_values)}")
                    lines.append(f"       {marker} {path}: {change}{forces}")
                else:
                    lines.append(f"       {marker} {path}{forces}")
    if not steps:
        lines.append("  (no changes)")
    lines.append(f"Changes: {summarize_changes(object_summary(result.steps))}")
    return mask_secrets("\n".join(lines), secret_values) + "\n"


# ---------------------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, str]:
    namespace, slash, name = ref.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise PreviewError(f"instance {ref!r} must be written NAMESPACE/NAME")
    return namespace, name


def load_from_cluster(ref: str, kubeconfig: str | None,
                      context: str | None) -> tuple[Template, Instance, frozenset[str]]:
    """The template and the instance (with its spec.variablesFrom Secrets' variables merged in)
    and the values those Secrets gave, which are secret whatever their names."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    namespace, name = parse_ref(ref)
    try:
        if kubeconfig or context:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
        else:
            try:
                api = config.new_client_from_config()
            except ConfigException:
                config.load_incluster_config()
                api = client.ApiClient()
    except (ConfigException, OSError) as exc:
        raise PreviewError(f"cannot load Kubernetes configuration: {exc}") from exc
    objects = client.CustomObjectsApi(api)

    def get(plural: str, ns: str, obj_name: str, what: str) -> Mapping[str, Any]:
        try:
            return objects.get_namespaced_custom_object(GROUP, VERSION, ns, plural, obj_name)
        except ApiException as exc:
            if exc.status == 404:
                raise PreviewError(f"{what} {ns}/{obj_name} not found") from exc
            raise PreviewError(f"cannot read {what} {ns}/{obj_name}: HTTP {exc.status} "
                               f"{exc.reason}") from exc
        except OSError as exc:  # urllib3 connection errors are OSErrors
            raise PreviewError(f"cannot reach the Kubernetes API server: {exc}") from exc

    instance = Instance.from_dict(get(INSTANCE_PLURAL, namespace, name, "instance"), ref)
    template_ns = instance.template_namespace
    template = Template.from_dict(
        get(TEMPLATE_PLURAL, template_ns, instance.template.name, "template"),
        f"{template_ns}/{instance.template.name}")
    core = client.CoreV1Api(api)

    def get_secret(ns: str, secret_name: str) -> Mapping[str, Any] | None:
        try:
            resp = core.read_namespaced_secret(secret_name, ns, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise PreviewError(f"cannot read Secret {ns}/{secret_name}: HTTP {exc.status} "
                               f"{exc.reason}") from exc
        return json.loads(resp.data)

    try:
        extra = secretvars.secret_variables(instance,
                                            secretvars.read_secrets(instance, get_secret))
    except secretvars.SecretVariablesError as exc:
        raise PreviewError(str(exc)) from exc
    return (template, secretvars.with_variables(instance, extra),
            frozenset(v for v in extra.values() if v))


def load_from_files(template_path: str, instance_path: str) -> tuple[Template, Instance]:
    from jupyternetes.app.cli import load_document

    template_doc, template_source = load_document(template_path, "template")
    instance_doc, instance_source = load_document(instance_path, "instance")
    return (Template.from_dict(template_doc, template_source),
            Instance.from_dict(instance_doc, instance_source))


def run_preview(args: argparse.Namespace) -> int:
    from jupyternetes.app.cli import InputError  # cli imports this module: import at call time

    if args.template and not args.instance and not args.instance_ref:
        if args.template == "-" or os.path.isfile(args.template) or args.template.endswith(
                (".yaml", ".yml", ".json")):
            return fail(f"-t {args.template} is a template file: give the instance with -i "
                        "INSTANCE.yaml, or NAMESPACE/NAME of a template in the cluster for a "
                        "preview of every instance that uses it")
        from jupyternetes.admin.fleetpreview import run_fleet_preview

        return run_fleet_preview(args)
    try:
        if args.instance_ref and (args.template or args.instance):
            raise PreviewError("give either NAMESPACE/NAME or -t/-i, not both")
        if args.instance_ref:
            template, instance, from_secrets = load_from_cluster(
                args.instance_ref, args.kubeconfig, args.context)
        elif args.template and args.instance:
            template, instance = load_from_files(args.template, args.instance)
            from_secrets = frozenset()
        else:
            raise PreviewError("give NAMESPACE/NAME, or both -t TEMPLATE.yaml and "
                               "-i INSTANCE.yaml")
        policy = trust.policy_from_args(args)
        trust.check_template_use(template, instance)
        rendered = render(template, instance)
        trust.check_kinds(f"{template.namespace or instance.template_namespace}/{template.name}",
                          rendered.objects(), policy)
        settings = settings_from_args(args)
        secret_values = settings.secret_values(instance.variables) | from_secrets
        # One operation and exit: a pre-started idle worker would never be used.
        engine = StackEngine(settings, prestart=0)
        result = engine.preview(instance.namespace, instance.name, rendered, secret_values,
                                refresh=not args.no_refresh)
    except (PreviewError, StackConfigError, ValueError, InputError) as exc:
        return fail(exc)
    if result.result != "succeeded":
        first = result.message.strip().splitlines()
        return fail(f"preview of {instance.namespace}/{instance.name} failed: "
                    + ("; ".join(first) if first else "see the Pulumi output above"))
    manifests = {f"{o.group}/{o.entry}": o.manifest for o in rendered.objects()}
    sys.stdout.write(format_preview(result, engine.stack_name(instance.namespace, instance.name),
                                    secret_values, manifests))
    return EXIT_CHANGES if args.exit_code and result.has_changes else 0


def fail(error: object) -> int:
    print(f"jupyternetes preview: error: {' '.join(str(error).split())}", file=sys.stderr)
    return EXIT_ERROR


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preview", help="show what the operator would change for an instance",
        description="Render an instance's template and preview its Pulumi stack against the "
                    "cluster: per object create / update / replace / delete with the changed "
                    "fields, then the change summary.")
    parser.add_argument("instance_ref", nargs="?", metavar="NAMESPACE/NAME",
                        help="instance to read (with its template) from the cluster")
    parser.add_argument("-t", "--template", metavar="TEMPLATE.yaml|NS/NAME",
                        help="with -i: template file (instead of NAMESPACE/NAME); without -i: "
                             "the template NS/NAME whose every instance is previewed (fleet "
                             "preview, see below)")
    parser.add_argument("-i", "--instance", metavar="INSTANCE.yaml", help="instance file")
    parser.add_argument("--exit-code", action="store_true",
                        help="exit 1 when there are changes (0: none, 2: error)")
    parser.add_argument("--no-refresh", action="store_true",
                        help="compare with the stack's recorded state only, without reading "
                             "the live objects first")
    add_stack_arguments(parser)
    add_fleet_arguments(parser)
    trust.add_arguments(parser)
    parser.set_defaults(func=run_preview)
