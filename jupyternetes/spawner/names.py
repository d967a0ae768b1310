"""Names a spawn chooses: the user's namespace and the instance's name (pure).

`user_namespace_template` (with `enable_user_namespaces`) and `instance_name_template` are
`{field}` templates, as KubeSpawner writes them. They are filled with the *raw* values, and the
result is made a DNS-1123 label by `crd.naming.dns_label`: used verbatim when it already is one,
else cleaned up with a hash of the whole text appended, so two users whose names clean up alike
(`Ann.B`, `ann-b`) never share a namespace or an instance name.

Fields: `{username}`, `{servername}` (empty for the default server), `{hubnamespace}` (the hub's
namespace; `default` becomes `user`, as KubeSpawner does), and for instance names `{uuid}`: the
default name, `uuid5(user, server)` hex (crd.naming.instance_name_for_user), which is what makes
a name unique per user and server; an instance template must contain it.
"""

from __future__ import annotations

import string

from jupyternetes.crd.naming import DNS1035_PREFIX, dns_label, instance_name_for_user

DEFAULT_USER_NAMESPACE_TEMPLATE = "{hubnamespace}-{username}"
NAMESPACE_FIELDS = ("username", "servername", "hubnamespace")
INSTANCE_FIELDS = (*NAMESPACE_FIELDS, "uuid")


class NameTemplateError(ValueError):
    """A name template that cannot be used; the message names the setting and the fix."""


def template_fields(template: str, setting: str, allowed: tuple[str, ...]) -> set[str]:
    """The fields `template` uses; a NameTemplateError for any other (or a format spec)."""
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise NameTemplateError(f"{setting} {template!r}: {exc}; write {{{{ and }}}} for "
                                "literal braces") from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            raise NameTemplateError(
                f"{setting} {template!r}: unknown field {{{field}}}; use only "
                + ", ".join(f"{{{name}}}" for name in allowed))
        used.add(field)
    return used


def _values(user_name: str, server_name: str, hub_namespace: str) -> dict[str, str]:
    return {"username": user_name, "servername": server_name,
            "hubnamespace": "user" if hub_namespace == "default" else hub_namespace}


def user_namespace(template: str, user_name: str, server_name: str, hub_namespace: str) -> str:
    """The namespace of a user's server with `enable_user_namespaces` (a DNS-1123 label)."""
    template_fields(template, "user_namespace_template", NAMESPACE_FIELDS)
    rendered = template.format(**_values(user_name, server_name, hub_namespace))
    if not rendered:
        raise NameTemplateError(f"user_namespace_template {template!r} renders to an empty "
                                f"name for user {user_name!r}")
    return dns_label(rendered)


def instance_name(template: str, user_name: str, server_name: str, hub_namespace: str) -> str:
    """The instance's name: `uuid5` hex by default (template empty), else the template's."""
    default = instance_name_for_user(user_name, server_name)
    if not template:
        return default
    used = template_fields(template, "instance_name_template", INSTANCE_FIELDS)
    if "uuid" not in used:
        raise NameTemplateError(
            f"instance_name_template {template!r} has no {{uuid}}: instance names must be "
            "unique per user and server, and {uuid} (the default name) is what makes them so; "
            "e.g. 'hub2-{uuid}'")
    name = dns_label(template.format(uuid=default, **_values(user_name, server_name,
                                                              hub_namespace)))
    if name.startswith(DNS1035_PREFIX):
        # `j-<instance>` is the Service name prefix of instances whose names start with a
        # digit (crd.naming.object_name_for_kind): another hub's default-named instance.
        raise NameTemplateError(f"instance_name_template {template!r} gives {name!r}; names "
                                f"starting with {DNS1035_PREFIX!r} are reserved, choose "
                                "another prefix")
    return name
