"""(Template, Instance) -> Rendered: complete object manifests (pure, no I/O).

The placeholder grammar (escapes, typed placeholders, no re-scanning) is placeholders.py.

Object names are `<instance>-<entry>` (naming.object_name_for_kind): a Service whose name would
start with a digit (hub instance names are uuid hex) is named `j-<instance>-<entry>`, and the
built-in `{jupyternetes.otherResources.<entry>}` gives that same name.

An otherResources entry may carry further top-level fields besides name, labels, annotations,
apiVersion, kind and spec, for kinds without a `spec` (ConfigMap/Secret `data`, `stringData`,
`type`, `immutable`; Role `rules`; RoleBinding `subjects`, `roleRef`; ...). They are substituted
like everything else and copied to the object's top level; an entry without `spec` renders an
object without `spec`. `metadata` and `status` are refused (crd/model.py).

After substitution, entry label keys and annotation keys must be qualified names and label values
valid label values, so a variable like an e-mail address in a label fails here, naming the path,
instead of at the apiserver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import (
    HUB_SERVER_ANNOTATION,
    HUB_USER_ANNOTATION,
    KUBESPAWNER_CLAIM,
    LABEL_ACCOUNT,
    LABEL_ENTRY,
    LABEL_ENTRY_GROUP,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    LABEL_TEMPLATE,
    LABEL_TEMPLATE_NAMESPACE,
    MANAGED_BY,
)
from jupyternetes.crd.model import FIXED_KINDS, Instance, Template, TemplateEntry, key_path
from jupyternetes.crd.naming import (
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    label_value,
    object_name_for_kind,
)
from jupyternetes.render.placeholders import RenderError, substitute, substitute_tree


@dataclass(frozen=True)
class RenderedObject:
    group: str
    entry: str
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"]["namespace"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def api_version(self) -> str:
        return self.manifest["apiVersion"]


@dataclass(frozen=True)
class Rendered:
    pvcs: tuple[RenderedObject, ...]
    pods: tuple[RenderedObject, ...]
    other_resources: tuple[RenderedObject, ...]

    def objects(self) -> tuple[RenderedObject, ...]:
        # PVCs first: a pod's volume claims the PVC by name, so it should exist before the pod.
        return self.pvcs + self.pods + self.other_resources

    def manifests(self) -> list[dict]:
        return [o.manifest for o in self.objects()]


# The built-ins naming the instance; the spawner also sends them (hubvars.py), as the seed did.
INSTANCE_NAME = "jupyternetes.instance.name"
INSTANCE_NAMESPACE = "jupyternetes.instance.namespace"


def builtin_variables(template: Template, instance: Instance) -> dict[str, str]:
    """The facts every render provides; keys in their documented spelling."""
    names = {
        INSTANCE_NAME: instance.name,
        INSTANCE_NAMESPACE: instance.namespace,
        "jupyternetes.template.name": template.name,
        "jupyternetes.template.namespace": template.namespace or instance.template_namespace,
    }
    for group in ("pvcs", "pods", "otherResources"):
        for entry in template.entries(group):
            names[f"jupyternetes.{group}.{entry.name}"] = _object_name(instance, group, entry)
    return names


def kubespawner_claim_name(instance: Instance, entry: TemplateEntry) -> str | None:
    """The claim name a pvcs entry's `jupyternetes.kadense.io/kubespawner-claim` annotation
    asks for (placeholders filled from the instance's variables), None without it.

    The migration path from KubeSpawner: the entry's claim gets KubeSpawner's name for the
    user (e.g. `claim-{jupyterhub.kubespawner.user_server}`), and the operator adopts the claim
    of that name that KubeSpawner made for the same hub user and server
    (policy/ownership.py). Only for instances a hub made: the claim's owner is checked
    against the instance's hub.jupyter.org/username annotation."""
    wanted = entry.annotations.get(KUBESPAWNER_CLAIM)
    if wanted is None:
        return None
    path = f"spec.pvcs[{entry.name}].annotations.{KUBESPAWNER_CLAIM}"
    missing: list[tuple[str, str]] = []
    problems: list[str] = []
    name = substitute(wanted, {k.lower(): v for k, v in instance.variables.items()}, path,
                      missing, problems)
    if missing or problems:
        unknown = ", ".join(sorted({m for m, _ in missing})) or "; ".join(problems)
        raise RenderError(f"{path}: {wanted!r} cannot be filled ({unknown}); the spawner "
                          f"sets the jupyterhub.kubespawner.* variables", tuple(missing))
    if not is_dns1123_subdomain(name):
        raise RenderError(f"{path}: {wanted!r} gives {name!r}, not a valid claim name "
                          "(lowercase letters, digits, '-' and '.')")
    if instance.hub_user is None:
        raise RenderError(f"{path}: adopting a KubeSpawner claim needs an instance made by the "
                          f"hub (its {HUB_USER_ANNOTATION} annotation names the user whose "
                          f"claim it is); instance {instance.namespace}/{instance.name} has "
                          "none")
    return name


def _object_name(instance: Instance, group: str, entry: TemplateEntry) -> str:
    # One function for the object's name and the variable naming it, so references match.
    if group == "pvcs":
        claim = kubespawner_claim_name(instance, entry)
        if claim is not None:
            return claim
    kind = FIXED_KINDS[group][1] if group in FIXED_KINDS else entry.kind
    return object_name_for_kind(instance.name, entry.name, kind)


def render(template: Template, instance: Instance) -> Rendered:
    """Render every entry of `template` for `instance` into complete manifests.

    Variables are the instance's own plus the built-ins (`builtin_variables`). Built-ins win over
    an instance variable of the same name: they are facts about the objects being made (the seed's
    instance restates `jupyternetes.instance.name`; a disagreeing value would only break
    references). Every unknown placeholder is reported, with its path, in one RenderError.
    Contract labels win over an entry's own labels of the same key, because the operator finds
    its objects by them.
    """
    _check_match(template, instance)
    variables = {k.lower(): v for k, v in instance.variables.items()}
    variables.update({k.lower(): v for k, v in builtin_variables(template, instance).items()})
    missing: list[tuple[str, str]] = []
    invalid: list[str] = []
    typed: list[str] = []
    groups: dict[str, tuple[RenderedObject, ...]] = {}
    for group in ("pvcs", "pods", "otherResources"):
        groups[group] = tuple(
            _render_entry(template, instance, group, entry, variables, missing, invalid, typed)
            for entry in template.entries(group)
        )
    if missing:
        listed = "; ".join(f"{{{name}}} at {path}" for name, path in missing)
        unique = sorted({name for name, _ in missing}, key=str.lower)
        raise RenderError(
            f"template {_ref(template.namespace, template.name)} for instance "
            f"{instance.namespace}/{instance.name}: unknown placeholder(s) "
            f"{', '.join(unique)}: {listed}. Add them to the instance's spec.variables (or to a "
            "Secret in its spec.variablesFrom), or write {{ and }} for literal braces",
            tuple(missing),
        )
    if typed:
        raise RenderError(
            f"template {_ref(template.namespace, template.name)} for instance "
            f"{instance.namespace}/{instance.name}: typed placeholder(s) that cannot render: "
            f"{'; '.join(typed)}"
        )
    # After the placeholder check: an unfilled `{x}` is itself an invalid label value, and the
    # unknown name is the thing to fix first.
    if invalid:
        raise RenderError(
            f"template {_ref(template.namespace, template.name)} for instance "
            f"{instance.namespace}/{instance.name}: invalid labels/annotations after "
            f"substitution: {'; '.join(invalid)}"
        )
    return Rendered(groups["pvcs"], groups["pods"], groups["otherResources"])


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _check_match(template: Template, instance: Instance) -> None:
    wanted = _ref(instance.template_namespace, instance.template.name)
    if template.name != instance.template.name or (
        template.namespace is not None and template.namespace != instance.template_namespace
    ):
        raise RenderError(
            f"instance {instance.namespace}/{instance.name} references template {wanted} "
            f"(spec.template), but the template given is "
            f"{_ref(template.namespace, template.name)}"
        )


_LABEL_VALUE_RULE = ("at most 63 characters: letters, digits, '-', '_' and '.', starting and "
                     "ending with a letter or digit, or empty")
_KEY_RULE = ("a qualified name: an optional DNS subdomain prefix and '/', then at most 63 "
             "characters of letters, digits, '-', '_' and '.', starting and ending with a letter "
             "or digit")


def check_metadata(entry: TemplateEntry, base: str, labels: Mapping[str, str],
                   annotations: Mapping[str, str]) -> list[str]:
    """Problems with an entry's rendered labels and annotations, one message per bad key/value.

    `labels`/`annotations` are the rendered forms of entry.labels/entry.annotations (same order),
    so each problem can name the template path, which uses the key as written.
    """
    problems: list[str] = []
    for what, written, rendered in (("labels", entry.labels, labels),
                                    ("annotations", entry.annotations, annotations)):
        for original, (key, value) in zip(written, rendered.items(), strict=True):
            path = key_path(f"{base}.{what}", original)
            if not is_qualified_name(key):
                problems.append(f"{path}: key renders to {key!r}, which is not {_KEY_RULE}; "
                                f"change the key (or the variable it uses)")
            if what == "labels" and not is_label_value(value):
                problems.append(f"{path}: value renders to {value!r}, which is not a valid label "
                                f"value ({_LABEL_VALUE_RULE}); use a variable that fits, or move "
                                "it to annotations, whose values may be any text")
    return problems


def _substitute_strings(strings: Mapping[str, str], variables: Mapping[str, str], path: str,
                        missing: list[tuple[str, str]], problems: list[str]) -> dict[str, str]:
    """Labels and annotations: string keys and string values only, so nothing typed."""
    result: dict[str, str] = {}
    for key, value in strings.items():
        item_path = key_path(path, key)
        new_key = substitute(key, variables, f"{item_path} (key)", missing, problems)
        if new_key in result:
            raise RenderError(f"{item_path}: key renders to {new_key!r}, which another key "
                              "in the same object also renders to; make the keys distinct")
        result[new_key] = substitute(value, variables, item_path, missing, problems)
    return result


def _render_entry(template: Template, instance: Instance, group: str, entry: TemplateEntry,
                  variables: Mapping[str, str], missing: list[tuple[str, str]],
                  invalid: list[str], typed: list[str]) -> RenderedObject:
    base = f"spec.{group}[{entry.name}]"
    api_version, kind = FIXED_KINDS.get(group, (entry.api_version, entry.kind))
    missing_before, typed_before = len(missing), len(typed)
    labels = _substitute_strings(entry.labels, variables, f"{base}.labels", missing, typed)
    annotations = _substitute_strings(entry.annotations, variables, f"{base}.annotations",
                                      missing, typed)
    if len(missing) == missing_before and len(typed) == typed_before:
        invalid.extend(check_metadata(entry, base, labels, annotations))
    labels.update({
        LABEL_INSTANCE: label_value(instance.name),
        LABEL_INSTANCE_NAMESPACE: instance.namespace,
        LABEL_TEMPLATE: label_value(template.name),
        LABEL_TEMPLATE_NAMESPACE: label_value(template.namespace or instance.template_namespace),
        LABEL_ENTRY: entry.name,
        LABEL_ENTRY_GROUP: group,
        MANAGED_BY[0]: MANAGED_BY[1],
    })
    if group == "pvcs" and KUBESPAWNER_CLAIM in entry.annotations:
        # Whose KubeSpawner claim may be adopted comes from the instance alone, never the
        # template (policy/ownership.kubespawner_request reads these back).
        annotations.pop(HUB_SERVER_ANNOTATION, None)
        annotations[HUB_USER_ANNOTATION] = instance.hub_user or ""
        if instance.hub_server:
            annotations[HUB_SERVER_ANNOTATION] = instance.hub_server
    # Whose data it is comes from the instance alone (the spawner's label), never a template.
    labels.pop(LABEL_ACCOUNT, None)
    if instance.account and is_label_value(instance.account):
        labels[LABEL_ACCOUNT] = instance.account
    manifest: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": _object_name(instance, group, entry),
            "namespace": instance.namespace,
            "labels": labels,
            "annotations": annotations,
        },
    }
    # Everything but the user's data is owned by the instance (owner_reference).
    owner = owner_reference(instance) if group != "pvcs" else None
    if owner is not None:
        manifest["metadata"]["ownerReferences"] = [owner]
    if entry.has_spec:
        manifest["spec"] = substitute_tree(entry.spec, variables, f"{base}.spec", missing, typed)
    for key, value in entry.body.items():
        # crd/model.py refused metadata/status and near-miss spellings of the entry's own keys.
        manifest[key] = substitute_tree(value, variables, key_path(base, key), missing, typed)
    return RenderedObject(group=group, entry=entry.name, manifest=manifest)


def owner_reference(instance: Instance) -> dict[str, Any] | None:
    """The ownerReference of a managed object to its instance; None without a uid (an offline
    render of files). Pods and otherResources, never PVCs (user data must outlive its
    instance): should the finalizer be removed by hand, a force-delete leave the stack behind or
    the stack's state be lost, Kubernetes' garbage collector still removes the pods, Services,
    ConfigMaps, RoleBindings, ... the instance made. Every object is rendered into the
    instance's namespace, so the reference is always namespaced to namespaced (valid).
    blockOwnerDeletion is false so the operator needs no update rights on instances' finalizers
    for it, and deleting an instance never waits on its objects."""
    if not instance.uid:
        return None
    return {"apiVersion": API_VERSION, "kind": INSTANCE_KIND, "name": instance.name,
            "uid": instance.uid, "controller": True, "blockOwnerDeletion": False}
