"""pytest plugin: a real PostgreSQL server for the postgres:// state backend (conftest.py).

One server per test session (harness.postgres: Debian's PostgreSQL on 127.0.0.1, a
free port, password authentication), one fresh database per test (`postgres_backend`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from harness.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_backend(postgres_server: PostgresServer) -> str:
    """The URL (with its password) of an empty database of the session's server."""
    return postgres_server.create_database(f"t_{secrets.token_hex(6)}")
