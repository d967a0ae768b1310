"""Backend URL sources, redaction and the replica check (backendurl), postgres keys (pgstate)."""

from __future__ import annotations

import base64
import json
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyternetes.app.cli import main
from jupyternetes.engine.state import backendurl, pgstate

PG = "postgres://pulumi:s3cr%2Ft@127.0.0.1:5432/state?sslmode=disable"


def test_redact_hides_the_password_and_keeps_the_rest():
    assert backendurl.redact(PG) == "postgres://pulumi:***@127.0.0.1:5432/state?sslmode=disable"
    assert backendurl.redact("file:///var/state") == "file:///var/state"
    assert backendurl.password(PG) == "s3cr/t"
    assert backendurl.secret_forms(PG) == ["s3cr%2Ft", "s3cr/t"]


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                      blacklist_characters="@/?#:%[]"), min_size=4))
def test_redacted_url_never_contains_the_password(password):
    url = f"postgres://user:{password}@db.local:5432/x"
    assert password not in backendurl.redact(url).replace("postgres://user:", "", 1) \
        .replace("@db.local:5432/x", "")


def test_resolve_order_and_refusals():
    env = {"PULUMI_BACKEND_URL": PG}
    assert backendurl.resolve(None, None, env, "file:///d") == PG
    assert backendurl.resolve(None, None, {}, "file:///d") == "file:///d"
    assert backendurl.resolve(None, f"  {PG}\n", {}, "file:///d") == PG
    assert backendurl.resolve("s3://bucket", None, env, "file:///d") == "s3://bucket"
    with pytest.raises(backendurl.BackendUrlError, match="PULUMI_BACKEND_URL") as err:
        backendurl.resolve(PG, None, {}, "file:///d")
    assert "s3cr" not in str(err.value)
    with pytest.raises(backendurl.BackendUrlError, match="empty"):
        backendurl.resolve(None, "\n", {}, "file:///d")
    with pytest.raises(backendurl.BackendUrlError, match="both"):
        backendurl.resolve("s3://b", PG, {}, "file:///d")


def test_replicas_error_refuses_file_backend_for_several_replicas():
    assert backendurl.replicas_error("file:///s", 1) is None
    assert backendurl.replicas_error(PG, 3) is None
    message = backendurl.replicas_error("file:///s", 2)
    assert message and "postgres://" in message and "--leader-elect" in message
    assert "--shards N" in message and "--expected-replicas 2" in message
    assert backendurl.replicas_error(PG, 0)


def test_operator_refuses_several_replicas_on_a_file_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    code = main(["operator", "--state-dir", str(tmp_path), "--expected-replicas", "2",
                 "--health-port", "0", "--metrics-port", "0", "--log-format", "text"])
    err = capsys.readouterr().err
    assert code == 2
    assert "file:// backend" in err and "--expected-replicas 2" in err
    # What to configure instead: a shared postgres:// backend, and where its URL goes.
    assert "postgres://" in err and "PULUMI_BACKEND_URL" in err and "--backend-url-file" in err


def test_operator_refuses_a_password_on_the_command_line(tmp_path, capsys):
    code = main(["operator", "--state-dir", str(tmp_path), "--backend-url", PG,
                 "--log-format", "text"])
    err = capsys.readouterr().err
    assert code == 2
    assert "s3cr" not in err and "--backend-url-file" in err


def test_request_mask_values_add_the_backend_password():
    request = {"secret_values": ["tok"], "settings": {"backend_url": PG}}
    assert set(backendurl.request_mask_values(request)) == {"tok", "s3cr/t", "s3cr%2Ft"}


def test_parse_url_and_key_prefix():
    target = pgstate.parse_url(PG + "&table=my_state")
    assert (target.user, target.password, target.host, target.port, target.database,
            target.table, target.sslmode, target.key_prefix) == (
        "pulumi", "s3cr/t", "127.0.0.1", 5432, "state", "my_state", "disable", "state/")
    assert pgstate.parse_url("postgres://u@h/").key_prefix == ""
    with pytest.raises(pgstate.PostgresStateError, match="table"):
        pgstate.parse_url("postgres://u@h/db?table=x;drop")


def test_lock_row_as_the_lock_rule_sees_it():
    key = "db/.pulumi/locks/organization/p/ns.name/1234.json"
    blob = json.dumps({"pid": 42, "hostname": "op-0",
                       "timestamp": "2026-12-01T10:00:00.123456789Z"}).encode()
    lock = pgstate.lock_of(key, blob, 1.0)
    assert lock.path == PurePosixPath(key) and lock.stack == "ns.name"
    assert (lock.pid, lock.hostname) == (42, "op-0")
    assert lock.written_at and lock.written_at > 1.0  # the later of timestamp and updated_at
    unreadable = pgstate.lock_of(key, b"{not json", 5.0)
    assert (unreadable.pid, unreadable.hostname, unreadable.written_at) == (None, None, 5.0)
    data = json.dumps({"data": base64.b64encode(blob).decode()})
    assert pgstate.decode_blob(data) == blob
    assert pgstate.decode_blob("[]") is None


def test_settings_read_the_backend_url_file_and_hide_its_password(tmp_path, monkeypatch):
    import argparse

    from jupyternetes.engine import settings as engine_settings

    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    url_file = tmp_path / "backend-url"
    url_file.write_text(PG + "\n")
    parser = argparse.ArgumentParser()
    engine_settings.add_stack_arguments(parser)
    args = parser.parse_args(["--state-dir", str(tmp_path / "s"),
                              "--backend-url-file", str(url_file)])
    settings = engine_settings.settings_from_args(args, {"PULUMI_CONFIG_PASSPHRASE": "pp"})
    assert settings.backend_url == PG
    assert "s3cr" not in repr(settings)
    args = parser.parse_args(["--state-dir", str(tmp_path / "s"),
                              "--backend-url-file", str(tmp_path / "missing")])
    with pytest.raises(engine_settings.StackConfigError, match="--backend-url-file"):
        engine_settings.settings_from_args(args, {"PULUMI_CONFIG_PASSPHRASE": "pp"})


def test_cli_settings_file_is_where_the_cli_writes_it(tmp_path):
    import hashlib
    import os

    from jupyternetes.engine.runtime import workspaces

    work = tmp_path / "jupyternetes-stack-1-x"
    work.mkdir()
    expected = hashlib.sha1(os.path.realpath(work / "Pulumi.yaml").encode()).hexdigest()
    path = workspaces.cli_settings_file(work, "proj", str(tmp_path / "home"))
    assert path == tmp_path / "home" / "workspaces" / f"proj-{expected}-workspace.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    swept = workspaces.sweep_stale_workspaces(tmp_path, alive=lambda pid: False, project="proj",
                                              pulumi_home=str(tmp_path / "home"))
    assert len(swept) == 1 and not path.exists() and not work.exists()


def test_cli_environment_keeps_the_password_out_of_the_url():
    env = backendurl.cli_environment(PG)
    assert env == {"PULUMI_BACKEND_URL": "postgres://pulumi@127.0.0.1:5432/state?sslmode=disable",
                   "PGPASSWORD": "s3cr/t"}
    assert backendurl.cli_environment("file:///s") == {"PULUMI_BACKEND_URL": "file:///s"}


# Messages the Pulumi CLI printed while the test's PostgreSQL server was down (e2e runs).
OUTAGE_MESSAGES = [
    "stderr: error: could not list bucket: blob (code=Unknown): dial tcp 127.0.0.1:5432: "
    "connect: connection refused",
    'stderr: error: unable to open state database "postgres://pulumi@127.0.0.1:5432/state?'
    'sslmode=disable": failed to ping PostgreSQL: dial tcp 127.0.0.1:5432: connect: '
    "connection refused",
    "error: there was a problem deleting the lock at postgres://****:****@127.0.0.1:5432/state/"
    ".pulumi/locks/organization/p/s/1.json, manual clean up may be required: blob "
    "(code=Unknown): FATAL: terminating connection due to administrator command "
    "(SQLSTATE 57P01)",
    "error: FATAL: the database system is starting up (SQLSTATE 57P03)",
    "stderr: error: could not list bucket: blob (code=Unknown): pq: the database system is "
    "shutting down (57P03)",
]


@pytest.mark.parametrize("message", OUTAGE_MESSAGES)
def test_an_unreachable_state_database_is_said_plainly(message):
    text = backendurl.explain_unreachable(message, PG)
    assert text.startswith("the Pulumi state backend postgres://127.0.0.1:5432/state is "
                           "unreachable"), text
    assert "retried" in text
    assert message.removeprefix("stderr: ").removeprefix("error: ") in text  # the detail stays
    assert "s3cr" not in text


@pytest.mark.parametrize(("message", "url"), [
    # The apiserver refusing is not the state backend's problem.
    ("dial tcp 127.0.0.1:6443: connect: connection refused", PG),
    ("pods \"x\" is forbidden", PG),
    # Only shared backends: a file:// state is on the operator's disk.
    ("could not list bucket: blob (code=Unknown): open /x: permission denied", "file:///s"),
    ("", PG),
])
def test_other_failures_are_left_as_they_are(message, url):
    assert backendurl.explain_unreachable(message, url) == message
