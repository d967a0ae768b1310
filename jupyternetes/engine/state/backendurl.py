"""Where the Pulumi backend URL comes from, and keeping its password out of every text.

A `postgres://user:password@host/db` URL carries a credential. It is taken from the
environment (`PULUMI_BACKEND_URL`, the variable the Pulumi CLI itself reads) or from a file
(`--backend-url-file`, a mounted Secret), never from the command line (argv is world-readable
in /proc). Everything that shows the URL shows `redact(url)`; the password itself is added to
the log masks (masking.py). Pure functions; the caller reads the file and the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

ENV_BACKEND_URL = "PULUMI_BACKEND_URL"
REDACTED = "***"


class BackendUrlError(ValueError):
    """The backend URL settings are unusable; the message says what to change."""


def password(url: str) -> str | None:
    """The password in `url` (percent-decoded), None when there is none."""
    try:
        raw = urlsplit(url).password
    except ValueError:
        return None
    return unquote(raw) if raw else None


def secret_forms(url: str) -> list[str]:
    """The password as it may appear in a text: decoded and as written in the URL."""
    try:
        raw = urlsplit(url).password
    except ValueError:
        return []
    return sorted({raw, unquote(raw)}) if raw else []


def redact(url: str) -> str:
    """`url` with its password replaced by ***; safe for logs, status and Events."""
    try:
        parts = urlsplit(url)
        raw = parts.password
    except ValueError:
        return "<unparseable backend URL>"
    if not raw:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def without_password(url: str) -> str:
    """`url` without its password (the user stays): what the CLI gets for a postgres:// URL,
    whose password goes in PGPASSWORD instead, so that nothing the CLI writes (its workspace
    settings under PULUMI_HOME are keyed by the URL) holds it."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def cli_environment(url: str) -> dict[str, str]:
    """The environment that gives the Pulumi CLI this backend: PULUMI_BACKEND_URL, and for a
    postgres:// URL with a password, the URL without it plus PGPASSWORD (read by its driver)."""
    secret = password(url)
    if secret and is_postgres(url):
        return {ENV_BACKEND_URL: without_password(url), "PGPASSWORD": secret}
    return {ENV_BACKEND_URL: url}


def scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def is_postgres(url: str) -> bool:
    return scheme(url) in ("postgres", "postgresql")


def resolve(argument: str | None, file_text: str | None, environ: Mapping[str, str],
            default: str) -> str:
    """The backend URL: `--backend-url` (no password allowed there), else the content of
    `--backend-url-file`, else $PULUMI_BACKEND_URL, else `default` (the file:// backend)."""
    given = [name for name, value in (("--backend-url", argument),
                                      ("--backend-url-file", file_text)) if value is not None]
    if len(given) > 1:
        raise BackendUrlError("--backend-url and --backend-url-file both given; use one")
    if argument is not None:
        if password(argument):
            raise BackendUrlError(
                f"--backend-url {redact(argument)} holds a password, and command lines are "
                f"readable by every local user: put the URL in ${ENV_BACKEND_URL} or in a "
                "file given with --backend-url-file (e.g. a mounted Secret)")
        return argument
    if file_text is not None:
        url = file_text.strip()
        if not url:
            raise BackendUrlError("the --backend-url-file is empty; write the backend URL "
                                  "(postgres://user:password@host:port/db) into it")
        return url
    return environ.get(ENV_BACKEND_URL) or default


def replicas_error(url: str, expected_replicas: int) -> str | None:
    """Why `expected_replicas` operators cannot share `url`, None when they can."""
    if expected_replicas < 1:
        return f"--expected-replicas must be at least 1, not {expected_replicas}"
    if expected_replicas > 1 and scheme(url) == "file":
        return (f"--expected-replicas {expected_replicas} with the file:// backend "
                f"{redact(url)}: a file backend lives on one operator's disk and cannot be "
                "shared; run one replica, or give every replica the same shared backend "
                f"(postgres://user:password@host:port/db in ${ENV_BACKEND_URL} or "
                "--backend-url-file) and either --shards N (every replica works on its share "
                "of the instances) or --leader-elect (one works, the others stand by)")
    return None


# The PostgreSQL server itself saying it is going away or not there yet (SQLSTATE class 57P:
# admin shutdown, crash shutdown, cannot connect now), or the CLI failing to reach it.
_DATABASE_DOWN = re.compile(
    r"failed to ping PostgreSQL|unable to open state database|SQLSTATE 57P0[1-4]|"
    r"\(57P0[1-4]\)|"
    r"the database system is (starting up|shutting down|in recovery mode|not yet accepting)|"
    r"terminating connection due to administrator command", re.IGNORECASE)
# A network failure, which is the backend's only when its host:port is named with it (the
# apiserver's connection refused is not).
_NETWORK_DOWN = re.compile(
    r"connection refused|connection reset by peer|broken pipe|i/o timeout|no such host|"
    r"server closed the connection unexpectedly|unexpected EOF|bad connection",
    re.IGNORECASE)


def endpoint(url: str) -> str:
    """`scheme://host:port/path` of a shared backend: where it is, without user, password or
    query (postgres' default port made explicit)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (5432 if is_postgres(url) else None)
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{where}{parts.path}"


def explain_unreachable(message: str, url: str) -> str:
    """`message` prefixed with what it means when it says that the shared state backend `url`
    could not be reached (the CLI's own words name a "bucket" or a driver error); otherwise
    `message` unchanged. The operation is retried with backoff like any failed one."""
    if not message or not is_postgres(url):
        return message
    parts = urlsplit(url)
    host_port = f"{parts.hostname}:{parts.port or 5432}"
    if not (_DATABASE_DOWN.search(message)
            or (host_port in message and _NETWORK_DOWN.search(message))):
        return message
    detail = message
    for prefix in ("stderr: ", "error: "):
        detail = detail.removeprefix(prefix)
    return (f"the Pulumi state backend {endpoint(url)} is unreachable (the operation is "
            f"retried with backoff): {detail}")


def request_mask_values(request: Mapping) -> list[str]:
    """What a stack worker request's texts must not show: the instance's secret values and
    the backend URL's password (both sides of the worker pipe use this)."""
    url = ((request.get("settings") or {}).get("backend_url")) or ""
    return [*(request.get("secret_values") or ()), *secret_forms(url)]


def file_backend_path(backend_url: str) -> Path | None:
    """The directory of a `file://` backend URL, None for any other backend."""
    parsed = urlparse(backend_url)
    if parsed.scheme != "file":
        return None
    # file://~ is Pulumi's spelling of the home directory; file:///abs and file://abs both occur.
    raw = unquote(parsed.netloc + parsed.path)
    return Path(os.path.expanduser(raw))
