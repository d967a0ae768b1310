"""A throw-away PostgreSQL server for the e2e tests: the postgres:// Pulumi state backend.

`PostgresServer` runs Debian's PostgreSQL (installed by tools/harness/postgres/install.sh) from a
fresh data directory in its own temporary folder, listening on 127.0.0.1 on a free port with its
unix socket in that folder, password (SCRAM) authentication for one user. initdb refuses to run
as root, so as root the server runs as the `postgres` user (credentials are dropped in the child,
and PR_SET_PDEATHSIG is set *after* that: changing the uid clears it). The server is the child's
own process, not a pg_ctl daemon, so it dies with the process that started it (the kernel ties
that to the launching *thread*: start and restart it from a thread that outlives the server).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from harness.cluster import _LIBC, free_port

SERVER_USER = "postgres"
DB_USER = "pulumi"
START_TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    pass


def server_bin_dir() -> Path:
    """The newest Debian PostgreSQL bin dir with initdb and postgres, else the PATH's."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                        reverse=True)
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "postgres").exists():
            return bin_dir
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "postgres").exists():
        return Path(initdb).resolve().parent
    raise PostgresUnavailable("no PostgreSQL server (initdb, postgres) found; run "
                              "tools/harness/postgres/install.sh (make tools)")


def _as_user(uid: int | None, gid: int | None, die_with_parent: bool):
    def preexec() -> None:
        os.setsid()
        if uid is not None and gid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        if die_with_parent and _LIBC is not None:
            _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, after setuid (which clears it)
    return preexec


class PostgresServer:
    """`with PostgresServer() as pg: pg.url("db")`; `restart()` keeps the data."""

    def __init__(self, root: Path | None = None) -> None:
        self.bin_dir = server_bin_dir()
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="jupyternetes-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, the test server runs as user {SERVER_USER!r} (initdb "
                    "refuses root), and there is no such user; Debian's postgresql package "
                    "creates it (tools/harness/postgres/install.sh)") from None
            self._uid: int | None = entry.pw_uid
            self._gid: int | None = entry.pw_gid
        else:
            self._uid = self._gid = None

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chown(self, path: Path) -> None:
        if self._uid is not None:
            os.chown(path, self._uid, self._gid)  # type: ignore[arg-type]

    def init(self) -> None:
        self.root.chmod(0o755)
        self._chown(self.root)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        done = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", DB_USER,
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"],
            capture_output=True, preexec_fn=_as_user(self._uid, self._gid, False),
            cwd=self.root, timeout=120)
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.log.open("ab") as out:
            self._chown(self.log)
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
                preexec_fn=_as_user(self._uid, self._gid, True), close_fds=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited with {self.proc.returncode}:\n"
                                          f"{self.log_tail()}")
            done = subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1",
                                   "-p", str(self.port), "-t", "2"], capture_output=True)
            if done.returncode == 0:
                return
            time.sleep(0.2)
        raise PostgresUnavailable(f"postgres not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, mode: signal.Signals = signal.SIGINT, grace: float = 30.0) -> None:
        """SIGINT: fast shutdown (clients are disconnected, data is kept); SIGKILL: a crash."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, mode)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Backends notice the postmaster's death and exit; sweep its session to be sure.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def restart(self, down_seconds: float = 0.0, mode: signal.Signals = signal.SIGINT) -> None:
        """Stop (`mode`: SIGINT a fast shutdown, SIGKILL a crash with recovery at the start),
        stay down `down_seconds`, start again on the same port with the same data."""
        self.stop(mode)
        if down_seconds:
            time.sleep(down_seconds)  # an outage of a given length, not a wait for a condition
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- use ------------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return (f"postgres://{DB_USER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"
                f"{database}?sslmode=disable")

    def sql(self, statement: str, database: str = "postgres", params: tuple = ()) -> list:
        from jupyternetes.engine.state import pgstate

        with pgstate.connect(self.url(database)) as conn:
            cursor = conn.cursor()
            cursor.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str) -> str:
        """A new empty database; its backend URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
