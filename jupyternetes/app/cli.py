"""`jupyternetes` command line: `render` here; other subcommands live in their own modules."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError

# Each module exposes `add_parser(subparsers)`, which registers its subcommand and sets `func`.
# Registering a command is one line here. They are imported inside build_parser() and a module is
# skipped only while it does not exist yet (several people build them in parallel); any other
# import error, including a missing module *inside* one of them, still fails loudly.
COMMAND_MODULES: tuple[str, ...] = (
    "jupyternetes.app.operator",
    "jupyternetes.admin.preview",
    "jupyternetes.admin.lint",
    "jupyternetes.admin.migrate",
    "jupyternetes.admin.rollouts",
)

EXIT_USAGE = 2
# The `[operator]` extra's packages, by import name, and the commands that run the engine. A hub
# image installs the package with `[spawner]` only; there these commands must say what to
# install instead of failing later (the engine imports Pulumi in its worker processes).
OPERATOR_EXTRA_MODULES = ("pulumi", "pulumi_kubernetes", "prometheus_client", "pg8000",
                          "cryptography")
ENGINE_COMMANDS = frozenset({"operator", "preview"})


def missing_operator_modules() -> list[str]:
    return [name for name in OPERATOR_EXTRA_MODULES if importlib.util.find_spec(name) is None]


class _KubeYamlLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp type: like kubectl, `2024-01-01` stays a string (a date
    object is not JSON and no Kubernetes field wants one)."""


_KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class InputError(Exception):
    """A file that cannot be read or parsed; the message names the file."""


def load_document(path: str, what: str) -> tuple[Any, str]:
    """The single YAML (or JSON) document in `path` (`-` = stdin) and a name for messages."""
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read {what} file {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {what} file {source}: not UTF-8 text ({exc})") from exc
    try:
        docs = [d for d in yaml.load_all(text, Loader=_KubeYamlLoader) if d is not None]
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"{what} file {source} is not valid YAML: {detail}") from exc
    if len(docs) != 1:
        raise InputError(f"{what} file {source} must hold exactly one YAML document, "
                         f"found {len(docs)}")
    return docs[0], source


def dump(manifests: list[dict], output: str) -> str:
    """A stream `kubectl apply -f -` accepts: multi-document YAML or a JSON v1 List."""
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests},
                          indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump_all(manifests, sort_keys=False, allow_unicode=True,
                              default_flow_style=False, explicit_start=True)


def run_render(args: argparse.Namespace) -> int:
    if args.template == "-" and args.instance == "-":
        raise InputError("only one of --template and --instance can read stdin ('-')")
    template_doc, template_source = load_document(args.template, "template")
    instance_doc, instance_source = load_document(args.instance, "instance")
    template = Template.from_dict(template_doc, template_source)
    instance = Instance.from_dict(instance_doc, instance_source)
    sys.stdout.write(dump(render(template, instance).manifests(), args.output))
    return 0


def add_render_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="print the objects a template renders to for an instance",
        description="Render a JupyterNotebookTemplate for a JupyterNotebookInstance and print "
                    "the objects, ready for `kubectl apply -f -`.")
    parser.add_argument("-t", "--template", required=True, metavar="TEMPLATE.yaml",
                        help="template file ('-' for stdin)")
    parser.add_argument("-i", "--instance", required=True, metavar="INSTANCE.yaml",
                        help="instance file ('-' for stdin)")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml",
                        help="yaml: multi-document stream (default); json: a v1 List")
    parser.set_defaults(func=run_render)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyternetes",
        description="JupyterHub notebook servers from templates, one Pulumi stack per server.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_render_parser(subparsers)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this command module (or its package) is not written yet" is skipped.
            if not (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_operator_modules() if args.command in ENGINE_COMMANDS else []
    if missing:
        print(f"jupyternetes {args.command}: error: needs the operator's dependencies (missing: "
              f"{', '.join(missing)}); install them with: pip install 'jupyternetes[operator]'",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (InputError, ModelError, RenderError) as exc:
        print(f"jupyternetes {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
