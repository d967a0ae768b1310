"""Settings of the stack engine: backend, passphrase, and the environment given to Pulumi.

`StackSettings` is what every operation needs (backend URL, passphrase, kubeconfig, project),
read from the command line and the environment once (`settings_from_args`). `cli_env` is the
extra environment the stack worker adds to every CLI it starts (the provider plugin inherits the
CLI's environment), and the program passes `CLUSTER_IDENTIFIER` to its explicit provider. Each
of those settings was measured (see benchmarks/README.md, issue 10) and checked against the
SIGKILL-during-up tests; they are listed in README.md. Pulumi's defaults are left alone where a
setting would change what a user's own backend keeps.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyternetes.engine.state import backendurl
from jupyternetes.render import hubvars

log = logging.getLogger(__name__)

PROJECT = "jupyternetes-instances"
DEFAULT_STATE_DIR = "~/.jupyternetes/state"
PASSPHRASE_FILE = "passphrase"
DEFAULT_SECRET_VARIABLES = frozenset({hubvars.API_TOKEN})


class StackConfigError(RuntimeError):
    """The stack engine is misconfigured (no pulumi CLI, unreadable passphrase file, ...)."""


@dataclass(frozen=True)
class StackSettings:
    backend_url: str
    passphrase: str
    kubeconfig: str | None
    context: str | None
    pulumi_home: str | None
    project: str = PROJECT
    # Root of persistent per-stack Pulumi workspaces (Pulumi.yaml + Pulumi.<stack>.yaml), kept
    # for inspection; None (the default): a temporary directory per operation.
    work_dir: str | None = None
    secret_variables: frozenset[str] = DEFAULT_SECRET_VARIABLES
    # The operator replica running the operations (--replica-id): named in each operation's
    # message (`pulumi stack history`) and in the instance status (stack.lastUpdate.replica).
    replica: str | None = None

    def secret_values(self, variables: Mapping[str, str]) -> frozenset[str]:
        """The values of the secret variables among `variables` (names are case-insensitive,
        like placeholders); empty values are ignored, they would match every string."""
        wanted = {name.lower() for name in self.secret_variables}
        return frozenset(v for k, v in variables.items() if k.lower() in wanted and v)

    def to_request(self) -> dict[str, Any]:
        data = asdict(self)
        data["secret_variables"] = sorted(self.secret_variables)
        return data

    def __repr__(self) -> str:  # never print the passphrase in logs or tracebacks
        return (f"StackSettings(backend_url={backendurl.redact(self.backend_url)!r}, "
                f"kubeconfig={self.kubeconfig!r}, "
                f"context={self.context!r}, project={self.project!r}, passphrase=***)")


# ---------------------------------------------------------------------------------------------
# Settings from the command line (shared by `operator` and `preview`)


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Pulumi stacks")
    group.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                       help="local state: the default file:// backend and the generated "
                            "passphrase file (default %(default)s)")
    group.add_argument("--backend-url", default=None,
                       help="any Pulumi backend URL without a password (s3://, azblob://, "
                            "gs://, https://api.pulumi.com); one with credentials "
                            "(postgres://user:password@host:port/db) goes in "
                            "$PULUMI_BACKEND_URL or --backend-url-file; default "
                            "file://<state-dir>")
    group.add_argument("--backend-url-file", default=None, metavar="PATH",
                       help="file holding the backend URL (e.g. a mounted Secret); its "
                            "password is masked in every log line, Event and status")
    group.add_argument("--kubeconfig", default=None,
                       help="kubeconfig for the stacks' Kubernetes provider "
                            "(default: in-cluster config, else $KUBECONFIG)")
    group.add_argument("--context", default=None, help="kubeconfig context to use")
    group.add_argument("--secret-variable", action="append", default=[], metavar="NAME",
                       help="instance variable whose value is a Pulumi secret (repeatable; "
                            f"{hubvars.API_TOKEN} always is)")
    group.add_argument("--pulumi-home", default=None,
                       help="PULUMI_HOME holding the Kubernetes provider plugin "
                            "(default: $PULUMI_HOME or ~/.pulumi)")


def settings_from_args(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> StackSettings:
    env = os.environ if environ is None else environ
    state_dir = Path(os.path.expanduser(args.state_dir)).absolute()
    ensure_private_dir(state_dir)
    backend_url = backendurl.resolve(
        getattr(args, "backend_url", None), read_backend_url_file(
            getattr(args, "backend_url_file", None)), env, file_backend_url(state_dir))
    return StackSettings(
        backend_url=backend_url,
        passphrase=resolve_passphrase(state_dir, env),
        kubeconfig=os.path.abspath(os.path.expanduser(args.kubeconfig)) if args.kubeconfig
        else None,
        context=args.context,
        pulumi_home=args.pulumi_home or env.get("PULUMI_HOME") or None,
        # Temporary workspace per operation: the passphrase salt lives in the stack's state,
        # so nothing in a workspace needs to persist, and nothing accumulates per instance.
        work_dir=None,
        secret_variables=DEFAULT_SECRET_VARIABLES | frozenset(args.secret_variable or ()),
    )


def read_backend_url_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(os.path.expanduser(path)).read_text(encoding="utf-8")
    except OSError as exc:
        raise StackConfigError(f"cannot read --backend-url-file {path}: "
                               f"{exc.strerror or exc}") from exc


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def file_backend_url(state_dir: Path) -> str:
    return f"file://{state_dir}"


def resolve_passphrase(state_dir: Path, environ: Mapping[str, str]) -> str:
    """PULUMI_CONFIG_PASSPHRASE, else PULUMI_CONFIG_PASSPHRASE_FILE, else <state-dir>/passphrase
    (created once with a random value, mode 0600, and reused)."""
    if environ.get("PULUMI_CONFIG_PASSPHRASE"):
        return environ["PULUMI_CONFIG_PASSPHRASE"]
    if environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return read_passphrase_file(Path(environ["PULUMI_CONFIG_PASSPHRASE_FILE"]))
    path = state_dir / PASSPHRASE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_passphrase_file(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    log.info("created Pulumi passphrase file %s (mode 0600); keep it with the state", path)
    return read_passphrase_file(path)


def read_passphrase_file(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StackConfigError(f"cannot read the Pulumi passphrase file {path}: "
                               f"{exc.strerror or exc}") from exc
    if not value:
        raise StackConfigError(f"the Pulumi passphrase file {path} is empty; write a "
                               "passphrase into it or remove it to have one generated")
    return value


# ---------------------------------------------------------------------------------------------
# Environment of every Pulumi CLI run

# The provider's `clusterIdentifier`: with it set and unchanged, a changed kubeconfig (a rotated
# token or certificate, a renamed context, a moved file) is an update of the provider, never a
# replacement of the provider and with it of every object of every stack (pulumi-kubernetes
# DiffConfig). Adding it to an existing stack is an update too. The operator manages exactly
# one cluster, the one it runs against, so one constant identifies it for every stack.
CLUSTER_IDENTIFIER = "jupyternetes-operator-cluster"

# For any DIY backend (file://, postgres://, s3://, ...): login does not scan the backend for
# stacks in the legacy (non-project) layout just to print a warning nobody reads here.
DIY_BACKEND_ENV: dict[str, str] = {
    "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
}

# Only for the operator's own file:// state folder: no copy of the checkpoint into
# `.pulumi/backups/<project>/<stack>/` before every update (one file per update per stack,
# never pruned: 5,000 users x every spawn). The previous checkpoint is still kept as
# `<stack>.json.bak` on every save, and that is what diystate.restore_checkpoint needs.
FILE_BACKEND_ENV: dict[str, str] = {
    "PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS": "true",
}

CLOUD_SCHEMES = ("https", "http")

# Set to "true" in the operator's environment: Pulumi's defaults for every CLI run (the settings
# above are not applied, new stacks come from `pulumi stack init`). For comparing figures and
# for ruling these shortcuts out.
DEFAULTS_SWITCH = "JUPYTERNETES_PULUMI_DEFAULTS"


def is_diy_backend(backend_url: str) -> bool:
    """Everything but the Pulumi Cloud service (https://, or no URL: the default) is DIY."""
    scheme = urlparse(backend_url).scheme
    return bool(backend_url) and scheme not in CLOUD_SCHEMES


def shortcuts_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when DEFAULTS_SWITCH asks for plain Pulumi: no settings from this module and
    new stacks through `pulumi stack init` (no stackseed)."""
    return (os.environ if environ is None else environ).get(DEFAULTS_SWITCH, "").lower() != "true"


def cli_env(backend_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra environment for each Pulumi CLI run against `backend_url` (and its plugins)."""
    env: dict[str, str] = {}
    if not shortcuts_enabled(environ):
        return env
    if is_diy_backend(backend_url):
        env.update(DIY_BACKEND_ENV)
    if urlparse(backend_url).scheme == "file":
        env.update(FILE_BACKEND_ENV)
    return env


# ---------------------------------------------------------------------------------------------
# Worker processes (pool.py)

# Operations one worker process runs at once, each in a thread (Pulumi's Python runtime keeps
# its per-deployment state in contextvars). The operator runs `--workers` operations at once
# (4 by default), so one process usually serves them all.
ENV_WORKER_CONCURRENCY = "JUPYTERNETES_WORKER_CONCURRENCY"
DEFAULT_WORKER_CONCURRENCY = 8
# Operations one worker process runs in its life before it is replaced (bounds whatever a
# long-lived Python process may accumulate).
ENV_WORKER_REUSE = "JUPYTERNETES_WORKER_REUSE"
DEFAULT_WORKER_REUSE = 200


def worker_limits(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(concurrency, reuse) of the engine's worker processes, from the operator's environment.
    `1, 1` is one process per operation. A value that is not a positive integer is a
    configuration error naming the variable."""
    env = os.environ if environ is None else environ
    limits = []
    for name, default in ((ENV_WORKER_CONCURRENCY, DEFAULT_WORKER_CONCURRENCY),
                          (ENV_WORKER_REUSE, DEFAULT_WORKER_REUSE)):
        raw = (env.get(name) or "").strip()
        if not raw:
            limits.append(default)
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise StackConfigError(f"{name}={raw!r}: expected a whole number of operations, "
                                   f"1 or more (default {default})")
        limits.append(int(raw))
    return limits[0], limits[1]
