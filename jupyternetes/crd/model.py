"""Typed views of JupyterNotebookTemplate and JupyterNotebookInstance (their specs).

Pure: parsed from plain dicts (YAML documents or API objects). Every parse error names the source
(a file, or `namespace/name`) and the field path, because an admin reads it in `kubectl describe`.
The instance status is plain dicts (merge patches): its contract is `controller/status.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND, TEMPLATE_KIND
from jupyternetes.crd.labels import HUB_SERVER_ANNOTATION, HUB_USER_ANNOTATION, LABEL_ACCOUNT
from jupyternetes.crd.naming import is_dns1123_label, is_dns1123_subdomain

ENTRY_GROUPS = ("pvcs", "pods", "otherResources")
# Pods and PVCs have a fixed kind; an entry may restate it but not change it.
FIXED_KINDS = {"pods": ("v1", "Pod"), "pvcs": ("v1", "PersistentVolumeClaim")}


_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ModelError(ValueError):
    """A template or instance that does not fit the contract; says where and what to change."""


def key_path(parent: str, key: object) -> str:
    """`parent.key`, or `parent["key"]` when the key has dots, slashes etc.; also used by render."""
    if isinstance(key, str) and _SIMPLE_KEY.match(key):
        return f"{parent}.{key}" if parent else key
    text = f'"{key}"' if isinstance(key, str) else str(key)
    return f"{parent}[{text}]"


class _Reader:
    """Field access with the error message format shared by templates and instances."""

    def __init__(self, what: str, source: str) -> None:
        self.what = what
        self.source = source

    def fail(self, path: str, message: str) -> ModelError:
        return ModelError(f"{self.what} {self.source}: {path}: {message}")

    def mapping(self, obj: Mapping, key: str, path: str, required: bool = False) -> Mapping:
        value = obj.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required object is missing")
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {type(value).__name__}")
        return value

    def string(self, obj: Mapping, key: str, path: str, required: bool = False) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                raise self.fail(path, "required string is missing")
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {type(value).__name__} {value!r}")
        if required and not value:
            raise self.fail(path, "required string is empty")
        return value

    def string_map(self, obj: Mapping, key: str, path: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for k, v in self.mapping(obj, key, path).items():
            if not isinstance(k, str):
                raise self.fail(key_path(path, k), "keys must be strings")
            if not isinstance(v, str):
                raise self.fail(
                    key_path(path, k),
                    f"must be a string, got {type(v).__name__} {v!r} (quote it in YAML)",
                )
            result[k] = v
        return result

    def optional_int(self, obj: Mapping, key: str, path: str) -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {value!r}")
        return value


def _check_kind(reader: _Reader, obj: Mapping, kind: str) -> None:
    actual = obj.get("kind")
    if actual != kind:
        raise reader.fail("kind", f"expected {kind!r}, got {actual!r}")
    api_version = obj.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise reader.fail("apiVersion", f"expected {API_VERSION!r}, got {api_version!r}")


def _source(obj: Mapping, source: str | None) -> str:
    if source:
        return source
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    return f"{meta.get('namespace') or '?'}/{meta.get('name') or '?'}"


def _require_mapping(obj: object, what: str, source: str | None) -> Mapping:
    if not isinstance(obj, Mapping):
        raise ModelError(f"{what} {source or '?'}: expected a YAML/JSON object, got "
                         f"{type(obj).__name__}")
    return obj


# Keys of an entry with a meaning of their own; everything else in an otherResources entry is a
# further top-level body field of the object (ConfigMap `data`, RoleBinding `subjects`, ...).
ENTRY_KEYS = ("name", "labels", "annotations", "apiVersion", "kind", "spec")
# Top-level fields an entry must not carry: metadata is generated (name/labels/annotations are
# the entry's own keys), status belongs to the object's controller.
FORBIDDEN_BODY_FIELDS = {
    "metadata": "the object's metadata is generated; set name, labels and annotations on the "
                "entry itself",
    "status": "status is written by the object's controller, never by a template",
}


@dataclass(frozen=True)
class TemplateEntry:
    """One entry of spec.pods, spec.pvcs or spec.otherResources.

    `body`: further top-level fields of an otherResources object besides spec (`data`, `type`,
    `rules`, ...), copied to the object after substitution; always empty for pods and PVCs.
    `has_spec`: whether the entry wrote `spec`; an otherResources object without it gets no
    `spec` (a ConfigMap has none).
    """

    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict
    api_version: str | None = None
    kind: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    has_spec: bool = True


@dataclass(frozen=True)
class Template:
    name: str
    namespace: str | None
    pods: tuple[TemplateEntry, ...]
    pvcs: tuple[TemplateEntry, ...]
    other_resources: tuple[TemplateEntry, ...]
    generation: int | None = None
    uid: str | None = None
    # spec.allowedNamespaces: the namespaces whose instances may use it ("*": any); None when
    # the template does not say (then only its own namespace: policy/trust.py).
    allowed_namespaces: tuple[str, ...] | None = None

    def entries(self, group: str) -> tuple[TemplateEntry, ...]:
        return {"pods": self.pods, "pvcs": self.pvcs, "otherResources": self.other_resources}[group]

    @classmethod
    def from_dict(cls, obj: Mapping, source: str | None = None) -> Template:
        obj = _require_mapping(obj, "template", source)
        r = _Reader("template", _source(obj, source))
        _check_kind(r, obj, TEMPLATE_KIND)
        meta = r.mapping(obj, "metadata", "metadata", required=True)
        name = r.string(meta, "name", "metadata.name", required=True)
        namespace = r.string(meta, "namespace", "metadata.namespace")
        spec = r.mapping(obj, "spec", "spec", required=True)
        groups = {g: _parse_entries(r, spec, g) for g in ENTRY_GROUPS}
        return cls(
            name=name or "",
            namespace=namespace or None,
            pods=groups["pods"],
            pvcs=groups["pvcs"],
            other_resources=groups["otherResources"],
            generation=r.optional_int(meta, "generation", "metadata.generation"),
            uid=r.string(meta, "uid", "metadata.uid"),
            allowed_namespaces=_parse_allowed_namespaces(r, spec),
        )


def _parse_allowed_namespaces(r: _Reader, spec: Mapping) -> tuple[str, ...] | None:
    """spec.allowedNamespaces: namespace names, or "*" for every namespace."""
    raw = spec.get("allowedNamespaces")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise r.fail("spec.allowedNamespaces", f"must be a list of namespace names, got "
                     f"{type(raw).__name__}")
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not (item == "*" or is_dns1123_label(item)):
            raise r.fail(f"spec.allowedNamespaces[{index}]", f"{item!r} is not a namespace name "
                         "(lowercase letters, digits and '-') or \"*\" (every namespace)")
    return tuple(dict.fromkeys(raw))


def _parse_entries(r: _Reader, spec: Mapping, group: str) -> tuple[TemplateEntry, ...]:
    raw = spec.get(group)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail(f"spec.{group}", f"must be a list, got {type(raw).__name__}")
    entries: list[TemplateEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"spec.{group}[{index}]"
        if not isinstance(item, Mapping):
            raise r.fail(path, f"must be an object, got {type(item).__name__}")
        name = r.string(item, "name", f"{path}.name", required=True) or ""
        # The entry name becomes part of object names and of `{jupyternetes.<group>.<entry>}`.
        if not is_dns1123_label(name):
            raise r.fail(f"{path}.name", f"{name!r} must be a DNS-1123 label "
                         "(lowercase letters, digits and '-', at most 63 characters)")
        if name in seen:
            raise r.fail(f"{path}.name", f"duplicate entry name {name!r} in spec.{group}")
        seen.add(name)
        path = f"spec.{group}[{name}]"
        api_version = r.string(item, "apiVersion", f"{path}.apiVersion")
        kind = r.string(item, "kind", f"{path}.kind")
        if group in FIXED_KINDS:
            fixed_api, fixed_kind = FIXED_KINDS[group]
            if api_version not in (None, fixed_api) or kind not in (None, fixed_kind):
                raise r.fail(path, f"entries of spec.{group} are {fixed_api} {fixed_kind}, got "
                             f"{api_version} {kind}")
        elif not api_version or not kind:
            raise r.fail(path, "otherResources entries need apiVersion and kind")
        entries.append(TemplateEntry(
            name=name,
            labels=r.string_map(item, "labels", f"{path}.labels"),
            annotations=r.string_map(item, "annotations", f"{path}.annotations"),
            spec=dict(r.mapping(item, "spec", f"{path}.spec")),
            api_version=api_version,
            kind=kind,
            # Pods and PVCs keep their fixed shape: other keys are dropped, as the apiserver
            # prunes them (their CRD schema does not preserve unknown fields).
            body={} if group in FIXED_KINDS else _body_fields(r, item, path),
            has_spec=group in FIXED_KINDS or item.get("spec") is not None,
        ))
    return tuple(entries)


def _body_fields(r: _Reader, item: Mapping, path: str) -> dict[str, Any]:
    """The extra top-level fields of an otherResources entry; metadata/status and near-miss
    spellings of the entry's own keys (`Spec`, `apiversion`) are rejected, naming the field."""
    own = {key.lower(): key for key in ENTRY_KEYS}
    body: dict[str, Any] = {}
    for key, value in item.items():
        if key in ENTRY_KEYS:
            continue
        field_path = key_path(path, key)
        if not isinstance(key, str) or not key:
            raise r.fail(field_path, "top-level field names must be non-empty strings")
        reason = FORBIDDEN_BODY_FIELDS.get(key.lower())
        if reason:
            raise r.fail(field_path, f"an entry may not set {key!r}: {reason}")
        if key.lower() in own:
            raise r.fail(field_path, f"{key!r} differs from the entry field {own[key.lower()]!r} "
                         f"only in case; spell it exactly {own[key.lower()]!r}")
        body[key] = value
    return body


@dataclass(frozen=True)
class TemplateRef:
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class SecretRef:
    """`spec.variablesFrom[i].secretRef`: a Secret in the instance's namespace whose every data
    key is a variable, and every value a Pulumi secret (see render/secretvars.py)."""

    name: str


@dataclass(frozen=True)
class Instance:
    name: str
    namespace: str
    template: TemplateRef
    variables: dict[str, str]
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    deletion_timestamp: str | None = None
    finalizers: tuple[str, ...] = ()
    # spec.variablesFrom, in order; the Secrets are read by the operator, not parsed here.
    secret_refs: tuple[SecretRef, ...] = ()
    # The `jupyternetes.kadense.io/account` label (the spawner sets it): whose data this is.
    account: str | None = None
    # The hub user and server (the spawner's hub.jupyter.org/username and servername
    # annotations, raw names); None for an instance not made by a hub. Only a template's
    # KubeSpawner claim entry reads them (policy/ownership.py).
    hub_user: str | None = None
    hub_server: str = ""

    @property
    def template_namespace(self) -> str:
        return self.template.namespace or self.namespace

    @classmethod
    def from_dict(cls, obj: Mapping, source: str | None = None) -> Instance:
        """Parse an instance; a missing metadata.namespace means `default`, as for kubectl."""
        obj = _require_mapping(obj, "instance", source)
        r = _Reader("instance", _source(obj, source))
        _check_kind(r, obj, INSTANCE_KIND)
        meta = r.mapping(obj, "metadata", "metadata", required=True)
        name = r.string(meta, "name", "metadata.name", required=True) or ""
        namespace = r.string(meta, "namespace", "metadata.namespace") or "default"
        spec = r.mapping(obj, "spec", "spec", required=True)
        ref = r.mapping(spec, "template", "spec.template", required=True)
        variables = r.string_map(spec, "variables", "spec.variables")
        # Lookup is case-insensitive, so names differing only in case would be ambiguous.
        folded: dict[str, str] = {}
        for key in variables:
            other = folded.setdefault(key.lower(), key)
            if other != key:
                raise r.fail(key_path("spec.variables", key),
                             f"differs from {other!r} only in case; variable names are "
                             "case-insensitive")
        finalizers = meta.get("finalizers") or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            raise r.fail("metadata.finalizers", "must be a list of strings")
        secret_refs = _parse_secret_refs(r, spec)
        labels = meta.get("labels")
        account = labels.get(LABEL_ACCOUNT) if isinstance(labels, Mapping) else None
        annotations = meta.get("annotations")
        annotations = annotations if isinstance(annotations, Mapping) else {}
        hub_user, hub_server = (annotations.get(HUB_USER_ANNOTATION),
                                annotations.get(HUB_SERVER_ANNOTATION))
        return cls(
            name=name,
            namespace=namespace,
            template=TemplateRef(
                name=r.string(ref, "name", "spec.template.name", required=True) or "",
                namespace=r.string(ref, "namespace", "spec.template.namespace") or None,
            ),
            variables=variables,
            generation=r.optional_int(meta, "generation", "metadata.generation"),
            uid=r.string(meta, "uid", "metadata.uid"),
            resource_version=r.string(meta, "resourceVersion", "metadata.resourceVersion"),
            deletion_timestamp=r.string(meta, "deletionTimestamp", "metadata.deletionTimestamp"),
            finalizers=tuple(finalizers),
            secret_refs=secret_refs,
            account=account if isinstance(account, str) and account else None,
            hub_user=hub_user if isinstance(hub_user, str) and hub_user else None,
            hub_server=hub_server if isinstance(hub_server, str) else "",
        )


def _parse_secret_refs(r: _Reader, spec: Mapping) -> tuple[SecretRef, ...]:
    """spec.variablesFrom: `[{secretRef: {name}}]`; each Secret named once, a DNS-1123 name."""
    raw = spec.get("variablesFrom")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.fail("spec.variablesFrom", f"must be a list, got {type(raw).__name__}")
    refs: list[SecretRef] = []
    first_at: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"spec.variablesFrom[{index}]"
        if not isinstance(item, Mapping):
            raise r.fail(path, f"must be an object, got {type(item).__name__}")
        unknown = sorted(str(k) for k in item if k != "secretRef")
        if unknown:
            raise r.fail(f"{path}.{unknown[0]}", "unknown field; the only source of variables "
                         "is secretRef: {name: <Secret in the instance's namespace>}")
        ref = r.mapping(item, "secretRef", f"{path}.secretRef", required=True)
        name = r.string(ref, "name", f"{path}.secretRef.name", required=True) or ""
        if not is_dns1123_subdomain(name):
            raise r.fail(f"{path}.secretRef.name", f"{name!r} is not a valid Secret name "
                         "(lowercase letters, digits, '-' and '.', at most 253 characters)")
        if name in first_at:
            raise r.fail(f"{path}.secretRef.name", f"Secret {name!r} is already referenced "
                         f"at spec.variablesFrom[{first_at[name]}]; reference it once")
        first_at[name] = index
        refs.append(SecretRef(name))
    return tuple(refs)
