"""`jupyternetes preview --template NS/NAME [-f proposed.yaml]`: a template edit, fleet-wide.

I/O around the pure classifier (admin/fleet.py). What each server runs now, honestly:

- an instance whose stack is up and whose `status.stack.templateGeneration` is the live
  template's `metadata.generation` runs exactly what the live template renders for it (the
  operator applied that render; `desiredHash` was computed from it): the baseline is that render,
  computed here without any API call per instance;
- an instance that runs an older generation (held back by `--template-rollout next-start`, or
  whose last update failed) runs something no stored template describes any more: its objects
  are read from the cluster (one list per kind, label-selected by template, for the whole
  fleet) and compared on the fields the proposed template sets (fleet.project); objects of a
  kind that cannot be listed are compared with the live template's render;
- an instance whose stack is not up runs nothing: everything is a create;
- an instance pinned to a template revision (policy/revisions.py) is unchanged: no template edit
  reaches it.

The pure mode makes three list calls and no engine call, whatever the fleet's size. `--sample N`
or `--exact` also runs the real engine preview (refresh + preview of the instance's stack, as
`jupyternetes preview NS/NAME` does) for some or all changed instances, at most `--parallel` at
once, and says where it disagrees with the pure classification.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyternetes.admin import fleet
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import (
    LABEL_ENTRY,
    LABEL_ENTRY_GROUP,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    LABEL_TEMPLATE,
    LABEL_TEMPLATE_NAMESPACE,
)
from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.crd.naming import label_value
from jupyternetes.policy import revisions, trust
from jupyternetes.render import secretvars
from jupyternetes.render.objects import Rendered, render
from jupyternetes.render.placeholders import RenderError

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class FleetError(Exception):
    """One clear line for the admin."""


def object_dicts(rendered: Rendered) -> list[dict[str, Any]]:
    return [{"group": o.group, "entry": o.entry, "manifest": o.manifest}
            for o in rendered.objects()]


def template_ref_of(instance: Mapping[str, Any]) -> str | None:
    meta = instance.get("metadata") or {}
    ref = (instance.get("spec") or {}).get("template") or {}
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    return f"{ref.get('namespace') or meta.get('namespace') or 'default'}/{ref['name']}"


def running_generation(status: Mapping[str, Any]) -> tuple[bool, int | None]:
    """(stack is up, template generation it last applied)."""
    stack = status.get("stack") or {}
    up = bool(stack.get("desiredHash")) and (stack.get("lastUpdate") or {}).get(
        "result") == "succeeded"
    generation = stack.get("templateGeneration")
    return up, generation if isinstance(generation, int) else None


def expansion_by_class(storage_classes: Sequence[Mapping[str, Any]]) -> dict[str | None, bool]:
    """StorageClass name -> allowVolumeExpansion; None -> the default class's."""
    result: dict[str | None, bool] = {}
    for sc in storage_classes:
        meta = sc.get("metadata") or {}
        allowed = bool(sc.get("allowVolumeExpansion"))
        result[meta.get("name")] = allowed
        if (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            result[None] = allowed
    return result


def live_objects_of(objects: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """instance key (namespace/label value) -> [{group, entry, manifest}] from listed objects
    (status and server-set metadata dropped)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        key = f"{labels.get(LABEL_INSTANCE_NAMESPACE)}/{labels.get(LABEL_INSTANCE)}"
        group, entry = labels.get(LABEL_ENTRY_GROUP), labels.get(LABEL_ENTRY)
        if group and entry:
            found.setdefault(key, []).append({"group": group, "entry": entry,
                                              "manifest": strip_live(obj)})
    return found


LISTED_ALWAYS = frozenset({"Pod", "PersistentVolumeClaim"})


def baseline_from_live(live: Sequence[Mapping[str, Any]], live_render: list[dict[str, Any]],
                       proposed: list[dict[str, Any]],
                       listed_kinds: Collection[str] = LISTED_ALWAYS) -> list[dict[str, Any]]:
    """The objects the cluster has for one instance, projected on the proposed fields. Objects
    of a kind that could not be listed (no RBAC, no such API) come from the live template's
    render instead."""
    shapes = {(o["group"], o["entry"]): o["manifest"] for o in proposed}
    result = []
    for obj in live:
        shape = shapes.get((obj["group"], obj["entry"]),
                           {"apiVersion": None, "kind": None, "metadata": {"name": None}})
        result.append({**obj, "manifest": fleet.project(obj["manifest"], shape)})
    result += [o for o in live_render if o["manifest"].get("kind") not in listed_kinds]
    return result


def plan_fleet(template_ref: str, live_template: Template, proposed_template: Template,
               instances: Sequence[Mapping[str, Any]],
               live_objects: Mapping[str, list[dict[str, Any]]] | None,
               expandable: Mapping[str | None, bool],
               secrets: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
               listed_kinds: Collection[str] = LISTED_ALWAYS,
               policy: trust.TrustPolicy | None = None) -> fleet.FleetSummary:
    """Pure: one InstancePlan per instance of `template_ref`. `live_objects` may be None when
    no instance needs them (all run the live generation). `secrets`: (namespace, name) ->
    Secret, for the instances' spec.variablesFrom (their values render as the operator renders
    them; none is ever printed). `listed_kinds`: the kinds `live_objects` holds every object
    of. `policy`: the operator's trust flags; what they refuse is a render error here."""
    known = secrets or {}
    policy = policy or trust.TrustPolicy()
    summary = fleet.FleetSummary(template_ref)
    live_generation = live_template.generation
    for obj in instances:
        if template_ref_of(obj) != template_ref:
            continue
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name") or "?"
        up, generation = running_generation(obj.get("status") or {})
        pin = revisions.pinned(obj)
        if pin is not None:
            # A pinned server renders its revision, not the template: no edit reaches it.
            summary.plans.append(fleet.plan_instance(ns, name, [], [], expandable,
                                                     f"pinned to revision {pin}", generation))
            continue
        try:
            instance = Instance.from_dict(obj, f"{ns}/{name}")
            if instance.secret_refs:
                instance = secretvars.with_variables(instance, secretvars.secret_variables(
                    instance, secretvars.read_secrets(
                        instance, lambda sns, sname: known.get((sns, sname)))))
        except (ModelError, secretvars.SecretVariablesError) as exc:
            summary.plans.append(fleet.render_failed(ns, name, str(exc),
                                                     running_generation=generation))
            continue
        try:
            trust.check_template_use(proposed_template, instance)
            rendered = render(proposed_template, instance)
            trust.check_kinds(template_ref, rendered.objects(), policy)
            proposed = object_dicts(rendered)
        except (RenderError, trust.TrustError) as exc:
            summary.plans.append(fleet.render_failed(ns, name, str(exc),
                                                     getattr(exc, "missing", ()),
                                                     running_generation=generation))
            continue
        if not up:
            current: list[dict[str, Any]] = []
            baseline = "not running"
        else:
            try:
                # Without -f the proposal is the live template: its render is already here.
                live_render = proposed if proposed_template is live_template else object_dicts(
                    render(live_template, instance))
            except RenderError:
                live_render = []
            if generation is not None and generation == live_generation:
                current, baseline = live_render, "render"
            else:
                label = label_value(name)
                current = baseline_from_live((live_objects or {}).get(f"{ns}/{label}", []),
                                             live_render, proposed, listed_kinds)
                baseline = "live"
        summary.plans.append(fleet.plan_instance(ns, name, current, proposed, expandable,
                                                 baseline, generation))
    summary.plans.sort(key=lambda p: p.key)
    return summary


# ---- cluster I/O ------------------------------------------------------------------------------


def parse_ref(ref: str) -> tuple[str, str]:
    namespace, slash, name = ref.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise FleetError(f"template {ref!r} must be written NAMESPACE/NAME")
    return namespace, name


def load_proposed(path: str, namespace: str, name: str) -> Template:
    """The proposed template from a file; it *is* NAMESPACE/NAME whatever its metadata says."""
    from jupyternetes.app.cli import load_document

    doc, source = load_document(path, "template")
    if not isinstance(doc, Mapping):
        raise FleetError(f"template file {source} must hold one JupyterNotebookTemplate")
    doc = dict(doc)
    doc["metadata"] = {**(doc.get("metadata") or {}), "name": name, "namespace": namespace}
    return Template.from_dict(doc, source)


class ClusterReader:
    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client

        from jupyternetes.kube.client import api_client

        self.api = api_client(kubeconfig, context)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.storage = client.StorageV1Api(self.api)

    def _json(self, call: Any, what: str, *args: Any, **kwargs: Any) -> dict:
        from kubernetes.client.exceptions import ApiException

        try:
            return json.loads(call(*args, _preload_content=False, **kwargs).data)
        except ApiException as exc:
            raise FleetError(f"cannot {what}: HTTP {exc.status} {exc.reason}") from exc
        except OSError as exc:
            raise FleetError(f"cannot reach the Kubernetes API server: {exc}") from exc

    def template(self, namespace: str, name: str) -> dict:
        return self._json(self.custom.get_namespaced_custom_object, f"read template "
                          f"{namespace}/{name}", GROUP, VERSION, namespace, TEMPLATE_PLURAL, name)

    def instances(self) -> list[dict]:
        return self._json(self.custom.list_cluster_custom_object, "list instances", GROUP,
                          VERSION, INSTANCE_PLURAL).get("items") or []

    def managed(self, namespace: str, name: str, other_kinds: Collection[tuple[str, str]]
                ) -> tuple[list[dict], set[str]]:
        """The template's objects in every namespace (one label-selected list per kind), and
        the kinds listed; an otherResources kind that cannot be listed is left out."""
        from kubernetes.dynamic import DynamicClient

        selector = (f"{LABEL_TEMPLATE}={label_value(name)},"
                    f"{LABEL_TEMPLATE_NAMESPACE}={label_value(namespace)}")
        pods = self._json(self.core.list_pod_for_all_namespaces, "list pods",
                          label_selector=selector).get("items") or []
        pvcs = self._json(self.core.list_persistent_volume_claim_for_all_namespaces,
                          "list PVCs", label_selector=selector).get("items") or []
        found = [{"apiVersion": "v1", "kind": "Pod", **p} for p in pods] + [
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **c} for c in pvcs]
        listed = set(LISTED_ALWAYS)
        dynamic = DynamicClient(self.api) if other_kinds else None
        for api_version, kind in sorted(set(other_kinds)):
            try:
                resource = dynamic.resources.get(api_version=api_version, kind=kind)
                items = resource.get(label_selector=selector).to_dict().get("items") or []
            except Exception:  # no RBAC or no such API: compared with the render instead
                continue
            found += [{"apiVersion": api_version, "kind": kind, **item} for item in items]
            listed.add(kind)
        return found, listed

    def secrets(self, namespaces: Sequence[str]) -> dict[tuple[str, str], dict]:
        """Every Secret of each namespace (one list per namespace, not one read per instance)."""
        found: dict[tuple[str, str], dict] = {}
        for namespace in sorted(set(namespaces)):
            for item in self._json(self.core.list_namespaced_secret, f"list Secrets in "
                                   f"{namespace} (for spec.variablesFrom)",
                                   namespace).get("items") or []:
                found[(namespace, (item.get("metadata") or {}).get("name"))] = item
        return found

    def storage_classes(self) -> list[dict]:
        try:
            return self._json(self.storage.list_storage_class, "list StorageClasses").get(
                "items") or []
        except FleetError:
            return []  # no RBAC for it: expansions are reported as not known to be allowed


def strip_live(obj: dict) -> dict:
    """A live object as a manifest: status and server-set metadata dropped."""
    meta = obj.get("metadata") or {}
    return {**{k: v for k, v in obj.items() if k not in ("status", "metadata")},
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations")
                         if k in meta}}


def exact_previews(plans: Sequence[fleet.InstancePlan], proposed: Template,
                   instances: Mapping[str, Mapping[str, Any]], args: argparse.Namespace,
                   secrets: Mapping[tuple[str, str], Mapping[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Engine preview of each plan's instance, at most args.parallel at once."""
    from jupyternetes.engine import StackEngine, settings_from_args

    settings = settings_from_args(args)
    engine = StackEngine(settings, prestart=0)

    def one(plan: fleet.InstancePlan) -> tuple[str, dict[str, Any]]:
        instance = Instance.from_dict(instances[plan.key], plan.key)
        extra = secretvars.secret_variables(instance, secretvars.read_secrets(
            instance, lambda sns, sname: secrets.get((sns, sname))))
        instance = secretvars.with_variables(instance, extra)
        rendered = render(proposed, instance)
        values = settings.secret_values(instance.variables) | {v for v in extra.values() if v}
        result = engine.preview(instance.namespace, instance.name, rendered, values,
                                refresh=True)
        replaced = sorted({s.name for s in result.steps if s.op == "replace"
                           or s.op in ("create-replacement", "delete-replaced")})
        changed = sorted({s.name for s in result.steps if s.op not in ("same", "read")
                          and not s.type.startswith("pulumi:")})
        pods_replaced = any(n.startswith("pods/") for n in replaced)
        expected = plan.outcome == fleet.POD_REPLACED
        return plan.key, {"result": result.result, "changeSummary": result.change_summary,
                          "replaced": replaced, "changed": changed,
                          "agrees": result.result == "succeeded" and (
                              pods_replaced == expected
                              and bool(changed) == (plan.outcome != fleet.UNCHANGED)),
                          "message": result.message.strip()[:300]}

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            return dict(pool.map(one, plans))
    finally:
        engine.close()


def run_fleet_preview(args: argparse.Namespace) -> int:
    from jupyternetes.app.cli import InputError

    try:
        namespace, name = parse_ref(args.template)
        reader = ClusterReader(args.kubeconfig, args.context)
        live = Template.from_dict(reader.template(namespace, name), args.template)
        proposed = load_proposed(args.file, namespace, name) if args.file else live
        items = reader.instances()
        mine = [i for i in items if template_ref_of(i) == args.template]
        stale = any(up and generation != live.generation for up, generation in
                    (running_generation(i.get("status") or {}) for i in mine))
        live_objects, listed = None, set(LISTED_ALWAYS)
        if stale:
            other_kinds = {(e.api_version or "", e.kind or "")
                           for t in (live, proposed) for e in t.other_resources}
            listed_objects, listed = reader.managed(namespace, name, other_kinds)
            live_objects = live_objects_of(listed_objects)
        secrets = reader.secrets([(i.get("metadata") or {}).get("namespace") or "default"
                                  for i in mine if (i.get("spec") or {}).get("variablesFrom")])
        summary = plan_fleet(args.template, live, proposed, mine, live_objects,
                             expansion_by_class(reader.storage_classes()), secrets, listed,
                             trust.policy_from_args(args))
        exact: dict[str, dict[str, Any]] = {}
        changed = [p for p in summary.plans if p.outcome not in (fleet.UNCHANGED,
                                                                   fleet.RENDER_ERROR)]
        chosen = changed if args.exact else changed[: max(0, args.sample)]
        if chosen:
            by_key = {f"{(i.get('metadata') or {}).get('namespace')}/"
                      f"{(i.get('metadata') or {}).get('name')}": i for i in mine}
            exact = exact_previews(chosen, proposed, by_key, args, secrets)
    except (FleetError, ValueError, InputError) as exc:  # ModelError, a bad kind flag
        print(f"jupyternetes preview: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if args.output == "json":
        doc = summary.to_dict()
        doc["liveGeneration"] = live.generation
        doc["exact"] = exact
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        text = fleet.format_summary(summary, show_unchanged=args.show_unchanged)
        for key, found in sorted(exact.items()):
            verdict = "agrees" if found["agrees"] else "DISAGREES"
            text += (f"Exact engine preview of {key}: {found['result']}, replaced "
                     f"{', '.join(found['replaced']) or 'nothing'}; {verdict} with the "
                     "classification\n")
        sys.stdout.write(text)
    return 1 if args.exit_code and summary.has_changes else 0


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "fleet preview (--template NS/NAME, without -i)",
        "what an edit of template NS/NAME does to every instance that uses it")
    group.add_argument("-f", "--file", metavar="PROPOSED.yaml",
                       help="the proposed template (default: the live one, against what each "
                            "server runs now)")
    group.add_argument("--exact", action="store_true",
                       help="also run the engine preview of every changed instance")
    group.add_argument("--sample", type=int, default=0, metavar="N",
                       help="also run the engine preview of N changed instances (default 0)")
    group.add_argument("--parallel", type=int, default=2, metavar="N",
                       help="engine previews at once (default 2)")
    group.add_argument("-o", "--output", choices=("text", "json"), default="text")
    group.add_argument("--show-unchanged", action="store_true",
                       help="list unchanged instances too")
