"""KubeSpawner's common traits as template variables `{jupyterhub.spawner.<trait>}` (pure).

The traits and how each is written are listed once, in render/hubvars.py (`SPAWNER_TRAITS`).
A value comes from the spawner's own config (`c.JupyternetesSpawner.image`, the hub's
`mem_limit`...) and is replaced by a profile's, then each chosen option's,
`kubespawner_override`, in KubeSpawner's order; a dict trait is merged key by key instead, and
a key set to None is removed (KubeSpawner's `recursive_update`). Values are checked where they
come from, so an error names the profile or option that set them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from jupyternetes.render import hubvars

TRAITS: tuple[str, ...] = tuple(hubvars.SPAWNER_TRAITS)
# jupyterhub.traitlets.ByteSpecification's suffixes (KubeSpawner's mem_limit/mem_guarantee).
BYTE_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class TraitValueError(ValueError):
    """A trait value that does not fit its kind; names the trait and where it was set."""


def parse_bytes(value: object) -> int:
    """Bytes as JupyterHub's ByteSpecification (so KubeSpawner) parses them: an int or float
    is bytes, a string is a number and one of K, M, G, T (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a byte size")
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str) or len(value) < 2 or value[-1] not in BYTE_UNITS:
        raise ValueError(f"{value!r} is not a byte size: an int of bytes, or a number with K, "
                         "M, G or T (1024-based), like 512M or 2G")
    try:
        number = float(value[:-1])
    except ValueError:
        raise ValueError(f"{value!r} is not a byte size: {value[:-1]!r} is not a number") \
            from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a byte size")
    return int(number * BYTE_UNITS[value[-1]])


def parse_cores(value: object) -> float:
    """CPU cores as the hub's Float trait takes them (a number; a numeric string too)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of cores")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of cores (like 0.5 or 2)") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a number of cores (like 0.5 or 2)")
    return number


def number_text(number: float) -> str:
    """A JSON number that is also a Kubernetes quantity: 2.0 -> "2", 0.5 -> "0.5"."""
    if number == int(number) and abs(number) < 2 ** 53:
        return str(int(number))
    return repr(number)


def key_name(key: str) -> str:
    """A map key as the last part of a placeholder name (`nvidia.com/gpu` -> `nvidia.com_gpu`)."""
    return _NAME_UNSAFE.sub("_", key)


def normalize(trait: str, value: object, where: str) -> object:
    """`value` of `trait` checked and in its kind's Python type (None: unset)."""
    kind = hubvars.SPAWNER_TRAITS.get(trait)
    if kind is None:
        raise TraitValueError(f"{where}: {trait!r} is not one of the traits sent to templates "
                              f"({', '.join(TRAITS)})")
    if value is None:
        return None
    try:
        if kind == "text":
            if not isinstance(value, str):
                raise ValueError(f"must be a string, got {type(value).__name__}")
            return value
        if kind == "number":
            return parse_cores(value)
        if kind == "bytes":
            return parse_bytes(value)
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a dict of name -> string, got {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"keys must be non-empty strings, got {key!r}")
            if item is not None and not isinstance(item, str | int | float):
                raise ValueError(f"{key}: must be a string, got {type(item).__name__}")
        return dict(value)
    except ValueError as exc:
        raise TraitValueError(f"{where}: {trait}: {exc}") from None


def effective(base: Mapping[str, object],
              layers: Sequence[tuple[str, Mapping[str, object]]]) -> dict[str, object]:
    """The traits after the override layers (`(where, {trait: value})`, in order)."""
    values = {trait: normalize(trait, base.get(trait), f"c.JupyternetesSpawner.{trait}")
              for trait in TRAITS}
    for where, layer in layers:
        for trait, raw in layer.items():
            value = normalize(trait, raw, where)
            current = values.get(trait)
            if isinstance(value, dict) and isinstance(current, dict):
                merged = dict(current)
                for key, item in value.items():
                    if item is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = item
                values[trait] = merged
            else:
                values[trait] = value
    return values


def _item_text(item: object) -> str:
    if isinstance(item, float):
        return number_text(item)
    return str(item)


def spawner_variables(values: Mapping[str, object]) -> dict[str, str]:
    """`jupyterhub.spawner.*` variables of the set traits (unset ones are not sent, so a
    template that uses one fails to render naming it, rather than getting an empty value)."""
    variables: dict[str, str] = {}
    for trait, kind in hubvars.SPAWNER_TRAITS.items():
        value = values.get(trait)
        if value is None or value == "":
            continue
        if kind == "map":
            seen: dict[str, str] = {}
            for key, item in sorted(value.items()):  # type: ignore[union-attr]
                if item is None:
                    continue
                name = key_name(key)
                if name in seen:
                    raise TraitValueError(
                        f"{trait}: keys {seen[name]!r} and {key!r} both become the variable "
                        f"{hubvars.spawner_variable(trait, name)!r}; rename one")
                seen[name] = key
                variables[hubvars.spawner_variable(trait, name)] = _item_text(item)
        elif kind == "number":
            variables[hubvars.spawner_variable(trait)] = number_text(value)  # type: ignore
        else:
            variables[hubvars.spawner_variable(trait)] = str(value)
    return variables


def env_overrides(values: Mapping[str, object]) -> dict[str, str]:
    """get_env()'s MEM_LIMIT, CPU_LIMIT... as get_env() writes them for these values (it
    writes only set, non-zero ones)."""
    env: dict[str, str] = {}
    for trait, name in hubvars.TRAIT_ENV_NAMES.items():
        value = values.get(trait)
        if value:
            env[name] = str(value)
    return env
