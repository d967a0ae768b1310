"""Variables from Secrets (`spec.variablesFrom`): read, decode, merge, and say what is wrong.

The hub's API token must not be written in plain text into the instance: the spawner writes it
into a Secret owned by the instance (`<instance>-hub`, keys `jupyterhub.api_token` and
`JUPYTERHUB_API_TOKEN`) and the instance names that Secret in
`spec.variablesFrom: [{secretRef: {name: ...}}]`. Every key of the Secret's `data`
(base64-decoded, UTF-8) is a variable, looked up case-insensitively like any other, and every
such value is a Pulumi secret.

Only Secrets meant for it are read (policy/trust.py, rule 3): the spawner's `<instance>-hub` and
Secrets labelled `jupyternetes.kadense.io/variables-from`; any other is `SecretNotAllowed`, so
an instance's author cannot read a Secret of the namespace through a template.

Pure apart from the `get_secret` callable the caller passes in. Errors carry a condition reason
(`SecretMissing`, `SecretNotAllowed`, `SecretInvalid`, `DuplicateVariable`) and a message naming
the Secret, the field path and what to change; they never contain a value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jupyternetes.crd.model import Instance, key_path
from jupyternetes.policy import trust

SECRET_MISSING = "SecretMissing"
SECRET_NOT_ALLOWED = trust.SECRET_NOT_ALLOWED
SECRET_INVALID = "SecretInvalid"
DUPLICATE_VARIABLE = "DuplicateVariable"

SecretGetter = Callable[[str, str], Mapping[str, Any] | None]


class SecretVariablesError(ValueError):
    """The Secrets of spec.variablesFrom cannot give the instance's variables; `reason` is the
    condition reason for the instance's status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def ref_path(index: int) -> str:
    return f"spec.variablesFrom[{index}].secretRef.name"


def read_secrets(instance: Instance,
                 get_secret: SecretGetter) -> list[Mapping[str, Any] | None]:
    """The referenced Secrets in spec.variablesFrom order (None where one does not exist)."""
    return [get_secret(instance.namespace, ref.name) for ref in instance.secret_refs]


def decode_data(secret: Mapping[str, Any], where: str) -> dict[str, str]:
    """The Secret's `data`, base64-decoded and UTF-8; `where` names it in errors."""
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise SecretVariablesError(SECRET_INVALID, f"{where}: data is not a map of keys to "
                                   "base64 values")
    decoded: dict[str, str] = {}
    for key, raw in data.items():
        try:
            decoded[str(key)] = base64.b64decode(str(raw or ""), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SecretVariablesError(
                SECRET_INVALID, f"{where}: the value of key {key!r} is not UTF-8 text, so it "
                "cannot be a template variable; store text in it, or move binary data to a "
                "Secret the instance does not list in spec.variablesFrom") from None
    return decoded


def secret_variables(instance: Instance,
                     secrets: list[Mapping[str, Any] | None]) -> dict[str, str]:
    """name -> value of every variable the referenced Secrets give, checked against each other
    and against spec.variables (names are case-insensitive, so a name defined twice would be
    ambiguous). `secrets` is `read_secrets`' answer."""
    ns = instance.namespace
    missing = [(i, ref.name) for i, (ref, secret) in
               enumerate(zip(instance.secret_refs, secrets, strict=True)) if secret is None]
    if missing:
        listed = "; ".join(f"Secret {ns}/{name} ({ref_path(i)})" for i, name in missing)
        raise SecretVariablesError(
            SECRET_MISSING,
            f"{listed} not found. Create it in namespace {ns} (JupyterHub's spawner creates "
            f"`<instance-name>-hub` right before the instance), or remove the reference from "
            f"spec.variablesFrom; the operator checks again within seconds, then less often")
    refusals = [refusal for i, secret in enumerate(secrets)
                if (refusal := trust.secret_refusal(instance, i, secret or {}))]
    if refusals:
        raise SecretVariablesError(SECRET_NOT_ALLOWED, "; ".join(refusals) + (
            ". The operator checks again within seconds, then less often"))
    defined: dict[str, tuple[str, str]] = {
        name.lower(): (name, key_path("spec.variables", name)) for name in instance.variables}
    result: dict[str, str] = {}
    for index, (ref, secret) in enumerate(zip(instance.secret_refs, secrets, strict=True)):
        where = f"Secret {ns}/{ref.name} ({ref_path(index)})"
        for name, value in decode_data(secret or {}, where).items():
            here = f"key {name!r} of {where}"
            other = defined.get(name.lower())
            if other is not None:
                raise SecretVariablesError(
                    DUPLICATE_VARIABLE,
                    f"variable {name!r} is defined twice: as {other[0]!r} at {other[1]} and as "
                    f"{here} (variable names are case-insensitive); remove one of them")
            defined[name.lower()] = (name, here)
            result[name] = value
    return result


def readable_values(instance: Instance, get_secret: SecretGetter) -> list[str]:
    """Best effort: every value the referenced Secrets hold now, skipping what is missing or
    undecodable (for masking during a delete, where nothing is rendered)."""
    values: list[str] = []
    for secret in read_secrets(instance, get_secret):
        for raw in ((secret or {}).get("data") or {}).values():
            try:
                values.append(base64.b64decode(str(raw or ""), validate=True).decode("utf-8"))
            except (binascii.Error, ValueError):
                continue
    return values


def with_variables(instance: Instance, extra: Mapping[str, str]) -> Instance:
    """The instance as the renderer sees it: spec.variables plus the Secrets' variables."""
    if not extra:
        return instance
    return dataclasses.replace(instance, variables={**instance.variables, **extra})


def variables_digest(variables: Mapping[str, str]) -> str:
    """sha256 of the Secrets' variables (names folded): kept in status.stack.variablesFromHash so
    that a changed Secret value is seen as the instance's own change. A hash, never a value."""
    canonical = json.dumps({k.lower(): v for k, v in variables.items()}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def secret_values(instance: Instance, secret_variables: Iterable[str]) -> frozenset[str]:
    """Values of the instance variables that must be Pulumi secrets (names case-insensitive,
    like placeholders); empty values are left out, they would match every string."""
    wanted = {v.lower() for v in secret_variables}
    return frozenset(v for k, v in instance.variables.items() if k.lower() in wanted and v)
