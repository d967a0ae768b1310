"""The trust model: the operator never grants more than a template's author could do (pure).

Whoever may write a JupyterNotebookTemplate may put anything its kinds allow into the namespaces
that use it, and whoever may write a JupyterNotebookInstance chooses the template and the Secrets
its variables come from. So, before any engine call:

1. A template is used only from the namespaces it names in `spec.allowedNamespaces` (`"*"`: any
   namespace); without the field, only from its own namespace. Otherwise: TemplateNotAllowed.
2. Pods and PVCs are what every template makes. An `otherResources` entry's kind must be in the
   operator's allow-list (`--other-resource-kind`, the deploy stack's `otherResourceKinds`);
   otherwise: KindNotAllowed. Kinds that grant rights (every kind of rbac.authorization.k8s.io,
   and a Secret of type kubernetes.io/service-account-token, which mints a ServiceAccount's token)
   are refused even when listed, unless the admin opts in (`--allow-rbac-kinds`).
3. `spec.variablesFrom` reads a Secret only when it is meant for it: labelled (or annotated)
   `jupyternetes.kadense.io/variables-from` with `"true"` (any instance of its namespace) or the
   instance's name (that instance only, as the spawner labels `<instance>-hub`), or named
   `<instance>-hub` and owned by no other object (the spawner's token Secret before it was
   labelled). Otherwise: SecretNotAllowed.

An allow-list entry is written as kubectl writes a resource: `RESOURCE[.GROUP]` with the plural
resource name (`configmaps`, `deployments.apps`, `rolebindings.rbac.authorization.k8s.io`), or
`Kind[.GROUP]` with the kind (`ConfigMap`, `Deployment.apps`) for a kind whose plural is not the
regular one. A kind matches a resource by Kubernetes' own guess (client-go's
UnsafeGuessKindToResource: lower case, then `s`, `es` after an `s`, `ies` for a final `y`).

Every refusal message names the field (template entry, spec.template, variablesFrom path) and
says what to change; none contains a Secret's value.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jupyternetes.crd.labels import VARIABLES_FROM
from jupyternetes.crd.model import FIXED_KINDS, Instance, Template
from jupyternetes.crd.naming import label_value

TEMPLATE_NOT_ALLOWED = "TemplateNotAllowed"
KIND_NOT_ALLOWED = "KindNotAllowed"
SECRET_NOT_ALLOWED = "SecretNotAllowed"

ANY_NAMESPACE = "*"
RBAC_GROUP = "rbac.authorization.k8s.io"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
KIND_FLAG = "--other-resource-kind"
RBAC_FLAG = "--allow-rbac-kinds"


class TrustError(ValueError):
    """A refusal of the trust model; `reason` is the Provisioned condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---- 1. which namespaces may use a template ---------------------------------------------------


def allowed_namespaces(template: Template) -> tuple[str, ...]:
    """spec.allowedNamespaces, or the template's own namespace when it does not say."""
    if template.allowed_namespaces is not None:
        return template.allowed_namespaces
    return (template.namespace,) if template.namespace else ()


def template_allows(template: Template, namespace: str) -> bool:
    """May an instance of `namespace` use `template`? A template read from a file without a
    namespace (admin lint/preview) is judged by its allowedNamespaces only."""
    if template.allowed_namespaces is None and not template.namespace:
        return True
    allowed = allowed_namespaces(template)
    return ANY_NAMESPACE in allowed or namespace in allowed


def check_template_use(template: Template, instance: Instance) -> None:
    if template_allows(template, instance.namespace):
        return
    ref = f"{template.namespace}/{template.name}"
    stated = ("its spec.allowedNamespaces is [" + ", ".join(allowed_namespaces(template)) + "]"
              if template.allowed_namespaces is not None else
              f"it has no spec.allowedNamespaces, so only instances of its own namespace "
              f"{template.namespace} may use it")
    raise TrustError(TEMPLATE_NOT_ALLOWED, (
        f"template {ref} (spec.template) may not be used from namespace {instance.namespace}: "
        f"{stated}. The template's author adds {instance.namespace!r} (or \"*\" for every "
        f"namespace) to its spec.allowedNamespaces, or point spec.template at a template that "
        f"allows {instance.namespace}"))


# ---- 2. which kinds a template may make --------------------------------------------------------


def api_group(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def guess_resource(kind: str) -> str:
    """The plural resource of `kind` as Kubernetes guesses it (UnsafeGuessKindToResource)."""
    name = kind.lower()
    if not name or name.endswith("endpoints"):
        return name
    if name.endswith("s"):
        return name + "es"
    if name.endswith("y"):
        return name[:-1] + "ies"
    return name + "s"


@dataclass(frozen=True)
class KindRule:
    """One entry of the allow-list: a group and either its plural resource or its kind."""

    group: str
    resource: str = ""
    kind: str = ""

    @classmethod
    def parse(cls, text: str) -> KindRule:
        """`configmaps`, `ConfigMap`, `deployments.apps`, `NetworkPolicy.networking.k8s.io`."""
        name, _, group = text.strip().partition(".")
        if not name or "*" in text or "/" in text or " " in text.strip():
            raise ValueError(
                f"{text!r} is not a kind: write RESOURCE[.GROUP] as kubectl does (configmaps, "
                "services, deployments.apps, rolebindings.rbac.authorization.k8s.io) or "
                "Kind[.GROUP] (ConfigMap, Deployment.apps); wildcards are not allowed")
        if name[0].isupper():
            return cls(group=group, kind=name)
        return cls(group=group, resource=name)

    def matches(self, group: str, kind: str) -> bool:
        if group != self.group:
            return False
        return kind == self.kind if self.kind else guess_resource(kind) == self.resource

    def __str__(self) -> str:
        name = self.kind or self.resource
        return f"{name}.{self.group}" if self.group else name


@dataclass(frozen=True)
class TrustPolicy:
    """The operator's settings of the trust model (its command line)."""

    other_resource_kinds: tuple[KindRule, ...] = ()
    allow_rbac_kinds: bool = False

    @classmethod
    def from_flags(cls, kinds: Iterable[str], allow_rbac_kinds: bool = False) -> TrustPolicy:
        return cls(tuple(dict.fromkeys(KindRule.parse(k) for k in kinds)), allow_rbac_kinds)

    def allows_kind(self, group: str, kind: str) -> bool:
        return any(rule.matches(group, kind) for rule in self.other_resource_kinds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trust flags, the same for the operator, `lint` and `preview` (so an admin checks a
    template with the settings the operator runs with)."""
    parser.add_argument(KIND_FLAG, action="append", default=[], metavar="RESOURCE[.GROUP]",
                        dest="other_resource_kinds",
                        help="a kind templates may create in otherResources (repeatable), as "
                             "kubectl names it: configmaps, services, deployments.apps, or "
                             "Kind[.GROUP] (ConfigMap). Pods and PVCs are always allowed; any "
                             "other kind is refused (KindNotAllowed) before any engine call "
                             "(default: none). The operator needs RBAC on the same kinds")
    parser.add_argument(RBAC_FLAG, action="store_true", dest="allow_rbac_kinds",
                        help="let templates create kinds that grant rights (every kind of "
                             "rbac.authorization.k8s.io, ServiceAccount token Secrets) when "
                             f"they are also listed with {KIND_FLAG}: whoever may write a "
                             "template can then grant what the operator may grant")


def policy_from_args(args: argparse.Namespace) -> TrustPolicy:
    """The policy of the flags add_arguments declared; ValueError names a bad kind."""
    return TrustPolicy.from_flags(getattr(args, "other_resource_kinds", None) or (),
                                  bool(getattr(args, "allow_rbac_kinds", False)))


def grants_rights(group: str, kind: str, manifest: Mapping[str, Any]) -> bool:
    """Objects that give someone rights: RBAC objects and ServiceAccount token Secrets."""
    if group == RBAC_GROUP:
        return True
    return group == "" and kind == "Secret" and manifest.get("type") == TOKEN_SECRET_TYPE


class RenderedLike(Protocol):
    group: str
    entry: str
    manifest: dict


def kind_problems(objects: Iterable[RenderedLike], policy: TrustPolicy) -> list[str]:
    """One message per rendered object the policy refuses (pods and PVCs are always allowed)."""
    problems: list[str] = []
    for obj in objects:
        if obj.group in FIXED_KINDS:
            continue
        api_version, kind = str(obj.manifest.get("apiVersion")), str(obj.manifest.get("kind"))
        group = api_group(api_version)
        where = f"spec.otherResources[{obj.entry}] ({api_version} {kind})"
        rule = f"{guess_resource(kind)}.{group}" if group else guess_resource(kind)
        if not policy.allows_kind(group, kind):
            problems.append(
                f"{where}: kind not in the operator's allow-list of otherResources kinds; an "
                f"admin adds it with `{KIND_FLAG} {rule}` (deploy stack: otherResourceKinds, "
                f"which also grants the operator its RBAC), or remove the entry")
        elif grants_rights(group, kind, obj.manifest) and not policy.allow_rbac_kinds:
            problems.append(
                f"{where}: this kind grants rights (RBAC objects, ServiceAccount token Secrets) "
                f"that the template's author may not have; refused unless an admin runs the "
                f"operator with `{RBAC_FLAG}` (deploy stack: allowRbacKinds), or remove the "
                f"entry")
    return problems


def check_kinds(template_ref: str, objects: Iterable[RenderedLike], policy: TrustPolicy) -> None:
    problems = kind_problems(objects, policy)
    if problems:
        raise TrustError(KIND_NOT_ALLOWED,
                         f"template {template_ref}: {len(problems)} entr"
                         f"{'y' if len(problems) == 1 else 'ies'} refused: " + "; ".join(problems))


# ---- 3. which Secrets variablesFrom may read ---------------------------------------------------


def hub_secret_name(instance_name: str) -> str:
    """The spawner's token Secret of an instance (spawner/manifests.secret_name)."""
    return f"{instance_name}-hub"


def secret_allows(secret: Mapping[str, Any], name: str, instance: Instance) -> bool:
    """Is `secret` (read by its `name`) meant to give variables to `instance` (rule 3)?"""
    meta = secret.get("metadata") or {}
    for marks in (meta.get("labels") or {}, meta.get("annotations") or {}):
        value = marks.get(VARIABLES_FROM) if isinstance(marks, Mapping) else None
        if value in ("true", instance.name, label_value(instance.name)):
            return True
    if name != hub_secret_name(instance.name):
        return False
    owners = [ref for ref in meta.get("ownerReferences") or [] if isinstance(ref, Mapping)]
    return not owners or any(ref.get("uid") == instance.uid for ref in owners)


def secret_refusal(instance: Instance, index: int, secret: Mapping[str, Any]) -> str | None:
    """Why spec.variablesFrom[index] may not read `secret`, or None."""
    name = instance.secret_refs[index].name
    if secret_allows(secret, name, instance):
        return None
    return (f"Secret {instance.namespace}/{name} (spec.variablesFrom[{index}].secretRef.name) "
            f"is not meant for variablesFrom: the operator reads only the spawner's "
            f"`<instance>-hub` Secret ({hub_secret_name(instance.name)}) and Secrets labelled "
            f"{VARIABLES_FROM}: \"true\" (any instance of the namespace) or "
            f"{VARIABLES_FROM}: {label_value(instance.name)!r} (this instance). Whoever owns "
            f"the Secret labels it, or remove the reference")


__all__ = [
    "KIND_NOT_ALLOWED", "SECRET_NOT_ALLOWED", "TEMPLATE_NOT_ALLOWED", "KindRule", "TrustError",
    "TrustPolicy", "api_group", "check_kinds", "check_template_use", "grants_rights",
    "guess_resource", "kind_problems", "secret_allows", "secret_refusal", "template_allows",
]
