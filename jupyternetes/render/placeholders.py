"""The placeholder grammar: substitution on parsed values (pure, no I/O).

Pure, no I/O. Grammar: `{name}` (name = ASCII letters, digits, `.`, `_`, `-`) is a placeholder,
looked up case-insensitively; `{{` and `}}` are literal braces; every other brace is literal, so
JSON inside a string just works. Substitution happens on parsed values (strings and mapping keys),
never on YAML text, and a substituted value is never scanned again, so a variable cannot inject
structure or further placeholders.

Typed placeholders: a value that is exactly one placeholder may name a type, `{name:int}`,
`{name:bool}` or `{name:number}`, and renders as that JSON type (`runAsUser:
'{jupyterhub.user.id:int}'` renders a number). int: optional `-`, digits; bool: `true`/`false`
in any case; number: a JSON number (an int when it has no fraction or exponent). A value that
does not parse is a render error naming the path. A typed placeholder inside a longer string,
in a mapping key, or in a label/annotation value (those are strings) is an error naming the
path. `{name:other}` is not a placeholder at all: it stays literal text, like any other brace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jupyternetes.crd.model import key_path

# One token per match: an escape, a placeholder (maybe typed), or a literal character run.
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9._-]+)(?::(int|bool|number))?\}|[^{}]+|[{}]")
_TYPED = re.compile(r"\{([A-Za-z0-9._-]+):(int|bool|number)\}")
_INT = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


class RenderError(ValueError):
    """A template that cannot be rendered for an instance; `.missing` lists (name, path)."""

    def __init__(self, message: str, missing: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


def substitute(text: str, variables: Mapping[str, str], path: str,
               missing: list[tuple[str, str]], problems: list[str] | None = None) -> str:
    """One pass over `text`; `variables` keys must be lowercase. Unknown names go to `missing`.

    A typed placeholder here (inside a longer string, or in a key) goes to `problems` (raised
    at once when None) and is left as written.
    """
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        name = match.group(1)
        if match.group(2) is not None:
            _problem(problems, f"{path}: typed placeholder {token} is only allowed as the whole "
                     f"value; inside a longer string, a key or a label/annotation value write "
                     f"{{{name}}} without a type")
            out.append(token)
        elif name is not None:
            value = variables.get(name.lower())
            if value is None:
                missing.append((name, path))
                out.append(token)
            else:
                out.append(value)
        elif token == "{{":
            out.append("{")
        elif token == "}}":
            out.append("}")
        else:
            out.append(token)
    return "".join(out)


def _problem(problems: list[str] | None, message: str) -> None:
    if problems is None:
        raise RenderError(message)
    problems.append(message)


def typed_value(raw: str, type_: str) -> int | float | bool | None:
    """`raw` as JSON type `type_` (int, bool, number); None when it does not parse."""
    if type_ == "int":
        return int(raw) if _INT.fullmatch(raw) else None
    if type_ == "bool":
        return {"true": True, "false": False}.get(raw.lower())
    if not _NUMBER.fullmatch(raw):
        return None
    if _INT.fullmatch(raw):
        return int(raw)
    number = float(raw)
    return number if number not in (float("inf"), float("-inf")) else None


_EXPECTED = {"int": "an integer (optional '-', then digits)",
             "bool": "true or false",
             "number": "a JSON number (like 8888, -1.5 or 2e3)"}


def substitute_value(text: str, variables: Mapping[str, str], path: str,
                     missing: list[tuple[str, str]], problems: list[str] | None = None) -> Any:
    """`substitute`, except that a value that is exactly one typed placeholder renders as its
    JSON type. A value that does not parse goes to `problems` (names the path and the value;
    raised at once when None); the operator masks secret values in every message."""
    match = _TYPED.fullmatch(text)
    if match is None:
        return substitute(text, variables, path, missing, problems)
    name, type_ = match.group(1), match.group(2)
    raw = variables.get(name.lower())
    if raw is None:
        missing.append((name, path))
        return text
    value = typed_value(raw, type_)
    if value is None:
        _problem(problems, f"{path}: {text}: the value {raw!r} of variable {name!r} is not "
                 f"{_EXPECTED[type_]}; fix the variable, or write {{{name}}} for a string")
        return text
    return value


def substitute_tree(value: Any, variables: Mapping[str, str], path: str,
                    missing: list[tuple[str, str]], problems: list[str] | None = None) -> Any:
    """Copy of a parsed YAML/JSON value with strings and mapping keys substituted (string
    values that are one typed placeholder become their type; see substitute_value)."""
    if isinstance(value, str):
        return substitute_value(value, variables, path, missing, problems)
    if isinstance(value, Mapping):
        result: dict = {}
        for key, item in value.items():
            item_path = key_path(path, key)
            new_key = (substitute(key, variables, f"{item_path} (key)", missing, problems)
                       if isinstance(key, str) else key)
            if new_key in result:
                raise RenderError(f"{item_path}: key renders to {new_key!r}, which another key "
                                  "in the same object also renders to; make the keys distinct")
            result[new_key] = substitute_tree(item, variables, item_path, missing, problems)
        return result
    if isinstance(value, list):
        return [substitute_tree(item, variables, f"{path}[{i}]", missing, problems)
                for i, item in enumerate(value)]
    return value
