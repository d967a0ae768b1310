"""Template history and rollouts from the command line (kubectl-like):

    jupyternetes history NS/TEMPLATE
    jupyternetes rollout status|pause|resume|undo|approve NS/TEMPLATE [--to-revision N]
                                                                      [--revision N]
    jupyternetes rollback NS/INSTANCE --to-revision N | --clear

Every command is one read or one merge patch of an annotation (or, for `undo`, of the
template's spec), so `kubectl` alone can do the same (README, "Template rollouts"):
pause/resume/approve are the annotations of controller/rollouts.py, rollback is the pin
annotation of policy/revisions.py, undo writes a revision's stored spec back into the template
(as `kubectl rollout undo` does for a Deployment), which finds that revision again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from jupyternetes.controller import rollouts
from jupyternetes.controller.revisions import RevisionStore
from jupyternetes.crd.labels import annotations_of
from jupyternetes.kube.errors import KubeError
from jupyternetes.policy import revisions

CLI_MANAGER = "jupyternetes-cli"


class RolloutError(Exception):
    """One line for the admin."""


def parse_ref(ref: str, what: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name:
        raise RolloutError(f"{what} must be NAMESPACE/NAME, not {ref!r}")
    return namespace, name


def _kube(args: argparse.Namespace) -> Any:
    from jupyternetes.kube.client import Kube, api_client

    return Kube(api_client(args.kubeconfig, args.context), component=CLI_MANAGER)


def _template(kube: Any, ref: str) -> dict:
    namespace, name = parse_ref(ref, "the template")
    obj = kube.get_template(namespace, name)
    if obj is None:
        raise RolloutError(f"template {ref} not found")
    return obj


def history_rows(tpl_obj: Mapping[str, Any], kept: list[Mapping[str, Any]]) -> list[dict]:
    """One row per revision (pure): number, hash, when, by whom, instances running it."""
    per_revision = (tpl_obj.get("status") or {}).get("revisions") or {}
    current = revisions.spec_hash(tpl_obj)
    rows = []
    for revision in kept:
        annotations = annotations_of(revision)
        number = int(revision.get("revision") or 0)
        rows.append({"revision": number, "hash": revisions.hash_of(revision)[:12],
                     "editedAt": annotations.get(revisions.EDITED_AT, ""),
                     "editedBy": annotations.get(revisions.EDITED_BY, ""),
                     "instances": int(per_revision.get(str(number), 0)),
                     "current": revisions.hash_of(revision) == current,
                     "name": (revision.get("metadata") or {}).get("name")})
    return rows


def format_history(ref: str, rows: list[dict]) -> str:
    if not rows:
        return (f"template {ref}: no revisions recorded yet (the operator records one per "
                "edit; it needs RBAC on controllerrevisions)\n")
    lines = [f"{'REVISION':<9} {'CURRENT':<8} {'INSTANCES':<10} {'EDITED-AT':<21} "
             f"{'EDITED-BY':<24} HASH"]
    for row in rows:
        lines.append(f"{row['revision']:<9} {'*' if row['current'] else '':<8} "
                     f"{row['instances']:<10} {row['editedAt']:<21} {row['editedBy']:<24} "
                     f"{row['hash']}")
    return "\n".join(lines) + "\n"


def run_history(args: argparse.Namespace) -> int:
    kube = _kube(args)
    tpl_obj = _template(kube, args.template)
    rows = history_rows(tpl_obj, RevisionStore(kube).history(tpl_obj))
    if args.output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        sys.stdout.write(format_history(args.template, rows))
    return 0


def format_status(ref: str, tpl_obj: Mapping[str, Any]) -> str:
    status = tpl_obj.get("status") or {}
    strategy = revisions.strategy_of(tpl_obj, "the operator's --template-rollout")
    rollout = status.get("rollout") or {}
    lines = [f"template {ref}: strategy {strategy}, current revision "
             f"{status.get('currentRevision', '?')}"]
    per_revision = status.get("revisions") or {}
    if per_revision:
        lines.append("instances per revision: " + ", ".join(
            f"{k}: {v}" for k, v in sorted(per_revision.items(), key=lambda kv: int(kv[0]))))
    if rollout:
        lines.append(f"rollout: {rollout.get('phase')} to revision {rollout.get('revision')} "
                     f"({rollout.get('updated', 0)}/{rollout.get('total', 0)} updated; stable "
                     f"revision {rollout.get('stableRevision')})")
        if rollout.get("message"):
            lines.append(f"  {rollout['message']}")
        for failed in rollout.get("failed") or []:
            lines.append(f"  failed: {failed.get('instance')}: {failed.get('message')}")
        preview = rollout.get("preview")
        if preview:
            lines.append(f"  fleet preview of revision {preview.get('revision')}: "
                         + ", ".join(f"{k} {v}" for k, v in (preview.get("counts") or {})
                                     .items())
                         + (f"; render errors: {', '.join(preview['renderErrors'])}"
                            if preview.get("renderErrors") else ""))
    annotations = annotations_of(tpl_obj)
    if str(annotations.get(rollouts.PAUSED, "")).lower() == "true":
        lines.append("paused by an admin (jupyternetes rollout resume)")
    return "\n".join(lines) + "\n"


def _annotate(kube: Any, ref: str, annotations: dict[str, str | None]) -> None:
    namespace, name = parse_ref(ref, "the template")
    if kube.patch_template(namespace, name, {"metadata": {"annotations": annotations}}) is None:
        raise RolloutError(f"template {ref} not found")


def undo_target(tpl_obj: Mapping[str, Any], kept: list[Mapping[str, Any]],
                to_revision: int | None) -> Mapping[str, Any]:
    """The revision `undo` goes back to (pure): `to_revision`, else the stable revision of the
    rollout if the template has moved on from it, else the one before the current."""
    by_number = {int(r.get("revision") or 0): r for r in kept}
    if to_revision is not None:
        if to_revision not in by_number:
            raise RolloutError(f"revision {to_revision} is not kept (kept: "
                               f"{', '.join(map(str, sorted(by_number))) or 'none'})")
        return by_number[to_revision]
    current = revisions.number_of(kept, revisions.spec_hash(tpl_obj))
    stable = ((tpl_obj.get("status") or {}).get("rollout") or {}).get("stableRevision")
    if isinstance(stable, int) and stable != current and stable in by_number:
        return by_number[stable]
    earlier = [n for n in sorted(by_number) if current is None or n < current]
    if not earlier:
        raise RolloutError("no earlier revision to go back to")
    return by_number[earlier[-1]]


def undo_patch(tpl_obj: Mapping[str, Any], revision: Mapping[str, Any]) -> dict[str, Any]:
    """Merge patch writing the revision's rendered fields into the template's spec; the
    revision is approved too (an admin undoing has chosen it)."""
    stored = (revision.get("data") or {}).get("spec") or {}
    spec: dict[str, Any] = {key: stored.get(key) for key in revisions.RENDERED_FIELDS}
    return {"spec": spec, "metadata": {"annotations": {
        rollouts.APPROVED: str(int(revision.get("revision") or 0))}}}


def run_rollout(args: argparse.Namespace) -> int:
    kube = _kube(args)
    ref = args.template
    if args.action == "status":
        sys.stdout.write(format_status(ref, _template(kube, ref)))
        return 0
    if args.action == "pause":
        _annotate(kube, ref, {rollouts.PAUSED: "true"})
        print(f"template {ref}: rollout paused")
        return 0
    if args.action == "resume":
        tpl_obj = _template(kube, ref)
        status = tpl_obj.get("status") or {}
        target = (status.get("rollout") or {}).get("revision") or status.get("currentRevision")
        annotations: dict[str, str | None] = {rollouts.PAUSED: None}
        if target:
            annotations[rollouts.RESUMED] = str(target)
        _annotate(kube, ref, annotations)
        print(f"template {ref}: rollout resumed" + (f" (revision {target})" if target else ""))
        return 0
    if args.action == "approve":
        if args.revision is None:
            raise RolloutError("approve needs --revision N (the revision whose preview you saw)")
        tpl_obj = _template(kube, ref)
        current = (tpl_obj.get("status") or {}).get("currentRevision")
        if current is not None and current != args.revision:
            raise RolloutError(f"revision {args.revision} is not the template's current "
                               f"revision ({current}); `jupyternetes rollout status {ref}`")
        _annotate(kube, ref, {rollouts.APPROVED: str(args.revision)})
        print(f"template {ref}: revision {args.revision} approved")
        return 0
    # undo
    tpl_obj = _template(kube, ref)
    target = undo_target(tpl_obj, RevisionStore(kube).history(tpl_obj), args.to_revision)
    namespace, name = parse_ref(ref, "the template")
    if kube.patch_template(namespace, name, undo_patch(tpl_obj, target)) is None:
        raise RolloutError(f"template {ref} not found")
    print(f"template {ref}: rolled back to revision {target.get('revision')}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    kube = _kube(args)
    namespace, name = parse_ref(args.instance, "the instance")
    if args.clear == (args.to_revision is not None):
        raise RolloutError("give --to-revision N, or --clear to follow the template again")
    if args.to_revision is not None:
        obj = kube.get_instance(namespace, name)
        if obj is None:
            raise RolloutError(f"instance {args.instance} not found")
        ref = (obj.get("spec") or {}).get("template") or {}
        tpl_ns = ref.get("namespace") or namespace
        tpl_obj = _template(kube, f"{tpl_ns}/{ref.get('name')}")
        if RevisionStore(kube).revision(tpl_obj, args.to_revision) is None:
            raise RolloutError(f"template {tpl_ns}/{ref.get('name')} has no revision "
                               f"{args.to_revision} (`jupyternetes history "
                               f"{tpl_ns}/{ref.get('name')}`)")
    value = None if args.clear else str(args.to_revision)
    if kube.patch_instance(namespace, name, {"metadata": {"annotations": {
            revisions.PIN_ANNOTATION: value}}}) is None:
        raise RolloutError(f"instance {args.instance} not found")
    print(f"instance {args.instance}: " + ("pin removed" if args.clear else
                                           f"pinned to revision {args.to_revision}"))
    return 0


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except (RolloutError, KubeError) as exc:
            print(f"jupyternetes {args.command}: error: {exc}", file=sys.stderr)
            return 1
    return run


def _cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file")
    parser.add_argument("--context", default=None, help="kubeconfig context")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    history = subparsers.add_parser(
        "history", help="list a template's revisions",
        description="List the revisions (ControllerRevisions) of a template: number, when and "
                    "by whom (managed-fields manager) it was edited, instances running it.")
    history.add_argument("template", metavar="NS/TEMPLATE")
    history.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _cluster_args(history)
    history.set_defaults(func=_guard(run_history))

    rollout = subparsers.add_parser(
        "rollout", help="status, pause, resume, undo or approve a template's rollout",
        description="Drive a template's rollout (spec.rollout); each action is one annotation "
                    "(or, for undo, the spec of a stored revision) written on the template.")
    rollout.add_argument("action", choices=("status", "pause", "resume", "undo", "approve"))
    rollout.add_argument("template", metavar="NS/TEMPLATE")
    rollout.add_argument("--to-revision", type=int, default=None,
                         help="undo: the revision to go back to (default: the previous one)")
    rollout.add_argument("--revision", type=int, default=None,
                         help="approve: the revision approved")
    _cluster_args(rollout)
    rollout.set_defaults(func=_guard(run_rollout))

    rollback = subparsers.add_parser(
        "rollback", help="pin one instance to a template revision",
        description="Pin one user's server to a revision of its template (annotation "
                    f"{revisions.PIN_ANNOTATION}); it is applied at once and rollouts pass it "
                    "by. --clear removes the pin.")
    rollback.add_argument("instance", metavar="NS/INSTANCE")
    rollback.add_argument("--to-revision", type=int, default=None)
    rollback.add_argument("--clear", action="store_true")
    _cluster_args(rollback)
    rollback.set_defaults(func=_guard(run_rollback))
