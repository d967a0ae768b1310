"""Deterministic names: Kubernetes object names, label values, Pulumi stack names, hub instances.

Pure: no I/O. Every name here is a function of its inputs only, because stable names are what let
a user's PVC survive a stop and be adopted again at the next start (never `generateName`).
"""

from __future__ import annotations

import hashlib
import re
import uuid

DNS1123_LABEL_MAX = 63
# Pulumi rejects stack names longer than 100 characters (pkg/workspace, ValidateStackName).
STACK_NAME_MAX = 100
HASH_LEN = 10

# Kinds whose object names the apiserver validates as DNS-1035 labels (a leading letter) rather
# than DNS-1123 labels. Kept explicit: a kind is added here only when its validation says so.
# `Service` covers core v1 Services (ValidateServiceName) and Knative Services alike.
DNS1035_KINDS = frozenset({"Service"})
# Put in front of `<instance>` when a DNS-1035 kind's name would start with a digit. Hub instance
# names are uuid hex, which never starts with `j`, so no hub-made instance can collide with it.
DNS1035_PREFIX = "j-"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_PART}(\.{_DNS1123_PART})*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def stable_hash(text: str, length: int = HASH_LEN) -> str:
    """Lowercase hex digest prefix: a valid DNS-1123 fragment that never changes across runs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def is_dns1123_label(value: str) -> bool:
    return len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def is_qualified_name(value: str) -> bool:
    """A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain, name <= 63 chars
    of letters, digits, `-`, `_`, `.` starting and ending alphanumeric (IsQualifiedName)."""
    prefix, slash, name = value.rpartition("/")
    if slash and not is_dns1123_subdomain(prefix):
        return False
    return bool(name) and is_label_value(name)


def _shorten(base: str, original: str, limit: int, strip: str) -> str:
    # The hash is of the *original* text, so two inputs that sanitize or truncate to the same
    # prefix still get different names.
    suffix = stable_hash(original)
    head = base[: limit - len(suffix) - 1].rstrip(strip)
    return f"{head}-{suffix}" if head else suffix


def object_name(instance_name: str, entry: str) -> str:
    """`<instance>-<entry>` as a DNS-1123 label (<= 63 chars).

    Used verbatim when already valid; otherwise lowercased, invalid characters turned into `-`,
    and truncated with a `-<10 hex of sha256(original)>` suffix. A Service additionally needs a
    leading letter (DNS-1035): use `object_name_for_kind` for names of objects of a known kind.
    """
    joined = f"{instance_name}-{entry}"
    if is_dns1123_label(joined):
        return joined
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", joined.lower())).strip("-")
    return _shorten(cleaned, joined, DNS1123_LABEL_MAX, "-")


def object_name_for_kind(instance_name: str, entry: str, kind: str | None) -> str:
    """`object_name`, made a DNS-1035 label (leading letter) for the kinds in DNS1035_KINDS.

    Rule: when `kind` is in DNS1035_KINDS and `object_name(instance, entry)` starts with a digit,
    the name is `object_name("j-" + instance, entry)` instead, i.e. `j-<instance>-<entry>`, or, when
    that is over 63 characters, its truncated form with the hash suffix (which keeps the leading
    `j`). Names that already start with a letter are unchanged, and other kinds always get
    `object_name`. Deterministic, so the object keeps its name across renders. The only possible
    clash is with a hand-made instance literally named `j-<the other instance>` in the same
    namespace; hub instance names are uuid hex and never start with `j`.
    """
    name = object_name(instance_name, entry)
    if kind not in DNS1035_KINDS or name[:1].isalpha():
        return name
    return object_name(DNS1035_PREFIX + instance_name, entry)


def label_value(value: str) -> str:
    """A valid label value for `value` (instance/template names may be up to 253 chars)."""
    if is_label_value(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value).strip("-_.")
    return _shorten(cleaned, value, 63, "-_.")


def stack_name(namespace: str, name: str) -> str:
    """Pulumi stack name of an instance: `<namespace>.<name>`.

    A namespace is a DNS label (no dots) so splitting on the first dot gives both parts back.
    When that is longer than Pulumi's 100-char limit the name part is shortened with a hash and
    marked by a double dot (`<namespace>..<prefix>-<hash>`), which no real name can produce
    (object names never start with a dot); such a stack name is not reversible.
    """
    if not is_dns1123_label(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS-1123 label")
    if not is_dns1123_subdomain(name):
        raise ValueError(f"instance name {name!r} is not a DNS-1123 subdomain")
    full = f"{namespace}.{name}"
    if len(full) <= STACK_NAME_MAX:
        return full
    room = STACK_NAME_MAX - len(namespace) - 2
    return f"{namespace}.." + _shorten(name, full, room, "-.")


def instance_name_for_user(username: str, server_name: str = "") -> str:
    """Instance name of a hub user's server, as the original system names it.

    Default server: `uuid5(NIL_UUID, username).hex` (jovyan -> 8dc366d8a0f05869bfdb6e7eb3d83f65).
    Named server (extension): `uuid5(uuid5(NIL_UUID, username), server_name).hex`; the user's own
    UUID is the namespace, so no choice of username and server name can collide with another
    user's default or named server (a "user/server" string join could).
    """
    user_uuid = uuid.uuid5(uuid.UUID(int=0), username)
    if not server_name:
        return user_uuid.hex
    return uuid.uuid5(user_uuid, server_name).hex


def dns_label(text: str) -> str:
    """`text` as a DNS-1123 label (a namespace or object name), collision-safe.

    Used verbatim when it already is one; otherwise lowercased, every other character turned
    into `-`, and always given the `-<10 hex of sha256(text)>` suffix (truncated to 63
    characters first), so two texts that clean up alike (`A.B`, `a-b`, `a_b`) never share a
    name. Empty text gives the bare hash."""
    if is_dns1123_label(text):
        return text
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
    return _shorten(cleaned, text, DNS1123_LABEL_MAX, "-")
