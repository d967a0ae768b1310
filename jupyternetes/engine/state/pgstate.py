"""Stale locks and crashed operations in Pulumi's DIY postgres:// backend.

The backend (pulumi pkg/backend/diy/postgres) stores every blob the file backend would write as
one row of a table (`pulumi_state` unless the URL says `?table=`): `key` is the blob's path
behind the URL's path as a prefix, like any non-file DIY bucket (pkg/backend/diy/backend.go:
`PrefixedBucket`): for
`postgres://.../mydb` the keys are `mydb/.pulumi/locks/organization/<project>/<stack>/<id>.json`,
`mydb/.pulumi/stacks/<project>/<stack>.json`, `mydb/.pulumi/history/...`; `data` is JSON
`{"data": "<base64 of the blob>"}` and `updated_at` the time of the last write. A write is one
INSERT ... ON CONFLICT statement, so no half-written blob can be left behind: what a killed CLI
leaves is its lock row and pending operations in the checkpoint. A lock row is judged by the
same rule as a lock file (locks.py: only when its holder is provably gone); its write time is
the later of the lock's timestamp and `updated_at`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jupyternetes.engine.state import locks

DEFAULT_TABLE = "pulumi_state"
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONNECT_TIMEOUT_SECONDS = 10.0


class PostgresStateError(RuntimeError):
    """The postgres backend cannot be read; the message names the server, never the password."""


@dataclass(frozen=True)
class Target:
    user: str
    password: str | None
    host: str
    port: int
    database: str
    table: str
    sslmode: str
    # Prefix of every key: the URL's path (the database name, usually) and "/".
    key_prefix: str = ""

    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database} table {self.table}"


def parse_url(url: str) -> Target:
    """Connection settings of a postgres:// backend URL (the same fields the CLI's lib/pq
    driver reads; `host=` in the query names a unix socket directory)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    table = query.get("table") or DEFAULT_TABLE
    if not _TABLE.fullmatch(table):
        raise PostgresStateError(f"backend URL: table {table!r} is not a plain SQL name")
    return Target(
        user=unquote(parts.username or "") or "postgres",
        password=unquote(parts.password) if parts.password else None,
        host=query.get("host") or parts.hostname or "localhost",
        port=parts.port or int(query.get("port") or 5432),
        database=(parts.path or "/").lstrip("/") or unquote(parts.username or "postgres"),
        table=table,
        sslmode=query.get("sslmode") or "prefer",
        key_prefix=key_prefix(unquote(parts.path)),
    )


def key_prefix(url_path: str) -> str:
    trimmed = url_path.lstrip("/")
    return trimmed if not trimmed or trimmed.endswith("/") else trimmed + "/"


def _ssl_context(sslmode: str) -> ssl.SSLContext | None:
    if sslmode in ("disable", "allow", "prefer"):
        return None
    context = ssl.create_default_context()
    if sslmode == "require":  # encrypted, not verified (libpq's meaning)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def connect(url: str) -> Iterator[Any]:
    import pg8000.dbapi  # imported here: only postgres:// backends need it

    target = parse_url(url)
    options: dict[str, Any] = {"user": target.user, "password": target.password,
                               "database": target.database, "timeout": CONNECT_TIMEOUT_SECONDS,
                               "ssl_context": _ssl_context(target.sslmode)}
    if target.host.startswith("/"):
        options["unix_sock"] = f"{target.host}/.s.PGSQL.{target.port}"
    else:
        options.update(host=target.host, port=target.port)
    try:
        conn = pg8000.dbapi.connect(**options)
    except Exception as exc:  # pg8000 raises several types; the message names no password
        raise PostgresStateError(f"cannot connect to the postgres backend {target.where()}: "
                                 f"{type(exc).__name__}: {exc}") from exc
    try:
        conn.autocommit = True
        yield conn
    except pg8000.dbapi.Error as exc:
        raise PostgresStateError(f"postgres backend {target.where()}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def decode_blob(data: Any) -> bytes | None:
    """The blob bytes of a row's `data` column (`{"data": base64}`), None when malformed."""
    try:
        doc = json.loads(data) if isinstance(data, str | bytes) else data
        return base64.b64decode(doc["data"])
    except (ValueError, TypeError, KeyError):
        return None


def lock_prefix(target: Target, organization: str, project: str) -> str:
    return f"{target.key_prefix}.pulumi/locks/{organization}/{project}/"


def _rows(conn: Any, table: str, prefix: str) -> list[tuple[str, Any, Any]]:
    """The rows under `prefix`; none while the table does not exist (the CLI creates it at its
    first login)."""
    cursor = conn.cursor()
    cursor.execute("SELECT to_regclass(%s)::text", (table,))
    if cursor.fetchone()[0] is None:
        return []
    # The table name is checked against _TABLE; the prefix is a bound parameter.
    cursor.execute(f"SELECT key, data, updated_at FROM {table} WHERE key LIKE %s ORDER BY key",
                   (_like_escape(prefix) + "%",))
    return list(cursor.fetchall())


def read_locks(conn: Any, target: Target, organization: str,
               project: str) -> list[locks.LockFile]:
    """Every lock row of the project, as locks.LockFile (its `path` is the row key)."""
    found = []
    for key, data, updated_at in _rows(conn, target.table,
                                       lock_prefix(target, organization, project)):
        if not key.endswith(".json"):
            continue
        blob = decode_blob(data)
        written = updated_at.timestamp() if updated_at is not None else None
        found.append(lock_of(key, blob, written))
    return found


def lock_of(key: str, blob: bytes | None, updated_at: float | None) -> locks.LockFile:
    """A lock row as the lock rule sees it; unreadable content gives an unknown holder."""
    path = PurePosixPath(key)
    try:
        content = json.loads(blob or b"")
        pid = int(content.get("pid") or 0) or None
        hostname = content.get("hostname") if isinstance(content.get("hostname"), str) else None
        stamp = locks.parse_timestamp(content.get("timestamp"))
    except (ValueError, TypeError, AttributeError):
        return locks.LockFile(path, None, None, updated_at)  # type: ignore[arg-type]
    times = [t for t in (stamp, updated_at) if t is not None]
    return locks.LockFile(path, pid, hostname,  # type: ignore[arg-type]
                          max(times) if times else None)


def delete_key(conn: Any, table: str, key: str) -> bool:
    cursor = conn.cursor()
    cursor.execute(f"DELETE FROM {table} WHERE key = %s", (key,))
    return bool(cursor.rowcount)


def stacks_with_pending_operations(conn: Any, target: Target, project: str) -> list[str]:
    """Stacks whose checkpoint row lists pending operations (a crashed `up`)."""
    prefix = f"{target.key_prefix}.pulumi/stacks/{project}/"
    found = []
    for key, data, _ in _rows(conn, target.table, prefix):
        name = key[len(prefix):]
        if "/" in name or not name.endswith(".json"):
            continue
        try:
            checkpoint = json.loads(decode_blob(data) or b"")
        except ValueError:
            continue
        deployment = ((checkpoint or {}).get("checkpoint") or {}).get("latest") or {}
        if deployment.get("pending_operations"):
            found.append(name[: -len(".json")])
    return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
