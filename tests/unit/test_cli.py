"""`jupyternetes render`: output streams, stdin, and one clear error line with exit code 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jupyternetes.app import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEMPLATE = str(EXAMPLES / "seed-template.yaml")
INSTANCE = str(EXAMPLES / "seed-instance.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def seed_docs() -> tuple[dict, dict]:
    return (yaml.safe_load(Path(TEMPLATE).read_text()),
            yaml.safe_load(Path(INSTANCE).read_text()))


def test_yaml_stream(capsys):
    code, out, err = run(capsys, "render", "-t", TEMPLATE, "-i", INSTANCE)
    assert (code, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("PersistentVolumeClaim", "8dc366d8a0f05869bfdb6e7eb3d83f65-workspace"),
        ("Pod", "8dc366d8a0f05869bfdb6e7eb3d83f65-notebook"),
    ]
    # Strings that look like numbers stay strings (kubectl would reject an int label value).
    assert docs[0]["metadata"]["labels"]["jupyternetes.kadense.io/userId"] == "1"


def test_json_list(capsys):
    code, out, _ = run(capsys, "render", "-t", TEMPLATE, "-i", INSTANCE, "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert (data["apiVersion"], data["kind"]) == ("v1", "List")
    assert [i["kind"] for i in data["items"]] == ["PersistentVolumeClaim", "Pod"]


def test_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(Path(INSTANCE).read_text()))
    code, out, _ = run(capsys, "render", "-t", TEMPLATE, "-i", "-")
    assert code == 0 and "8dc366d8a0f05869bfdb6e7eb3d83f65-notebook" in out


def test_own_example_with_service(capsys):
    code, out, _ = run(capsys, "render", "-t", str(EXAMPLES / "service-template.yaml"),
                       "-i", str(EXAMPLES / "service-instance.yaml"))
    assert code == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(out)}
    assert docs["Service"]["metadata"]["name"] == "alice-lab-http"
    assert docs["Service"]["spec"]["selector"]["jupyternetes.kadense.io/instance"] == "alice-lab"
    assert docs["Pod"]["metadata"]["annotations"]["example.kadense.io/greeting-template"] == (
        "Hello {user} from alice-lab")
    assert docs["Pod"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == (
        docs["PersistentVolumeClaim"]["metadata"]["name"])


def expect_error(capsys, argv: list[str], *fragments: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("jupyternetes render: error: ")
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unreadable_file(capsys, tmp_path):
    expect_error(capsys, ["render", "-t", str(tmp_path / "nope.yaml"), "-i", INSTANCE],
                 "cannot read template file", "nope.yaml", "No such file")


def test_invalid_yaml(capsys, tmp_path):
    bad = write(tmp_path, "bad.yaml", "spec: [unclosed\n  - x: {")
    err = expect_error(capsys, ["render", "-t", TEMPLATE, "-i", bad],
                       "instance file", "bad.yaml", "is not valid YAML")
    assert err.count("\n") == 1  # one line


def test_several_documents(capsys, tmp_path):
    both = write(tmp_path, "both.yaml", Path(TEMPLATE).read_text() + "---\n"
                 + Path(INSTANCE).read_text())
    expect_error(capsys, ["render", "-t", both, "-i", INSTANCE], "exactly one YAML document",
                 "found 2")


def test_wrong_kind(capsys):
    expect_error(capsys, ["render", "-t", INSTANCE, "-i", INSTANCE],
                 "template", "seed-instance.yaml", "kind: expected 'JupyterNotebookTemplate'",
                 "'JupyterNotebookInstance'")


def test_missing_required_field(capsys, tmp_path):
    _, instance = seed_docs()
    del instance["spec"]["template"]["name"]
    path = write(tmp_path, "inst.yaml", instance)
    expect_error(capsys, ["render", "-t", TEMPLATE, "-i", path],
                 "inst.yaml: spec.template.name: required string is missing")


def test_unknown_placeholders(capsys, tmp_path):
    _, instance = seed_docs()
    del instance["spec"]["variables"]["jupyterhub.namespace"]
    del instance["spec"]["variables"]["jupyterhub.api_token"]
    path = write(tmp_path, "inst.yaml", instance)
    expect_error(capsys, ["render", "-t", TEMPLATE, "-i", path],
                 "unknown placeholder(s) jupyterhub.api_token, jupyterhub.namespace",
                 "spec.pods[notebook].spec.containers[0].env[0].value",
                 "spec.pods[notebook].spec.containers[0].env[4].value")


def test_template_instance_mismatch(capsys, tmp_path):
    _, instance = seed_docs()
    instance["spec"]["template"]["name"] = "other-template"
    path = write(tmp_path, "inst.yaml", instance)
    expect_error(capsys, ["render", "-t", TEMPLATE, "-i", path],
                 "references template kadense/other-template",
                 "template given is kadense/default-template")


def test_both_from_stdin_refused(capsys):
    expect_error(capsys, ["render", "-t", "-", "-i", "-"], "only one of")


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["render", "-t", TEMPLATE])
    assert exc.value.code == 2


def test_missing_command_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("jupyternetes.not_written_yet",))
    parser = cli.build_parser()
    assert parser.parse_args(["render", "-t", "a", "-i", "b"]).func is cli.run_render


def test_broken_command_module_fails_loudly(monkeypatch, tmp_path):
    # A command module that exists but imports something missing must not be hidden.
    package = tmp_path / "jnt_cli_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("import module_that_does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("jnt_cli_probe.broken",))
    with pytest.raises(ModuleNotFoundError, match="module_that_does_not_exist_anywhere"):
        cli.build_parser()


def test_registered_module_adds_its_command(monkeypatch, tmp_path):
    package = tmp_path / "jnt_cli_probe2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hello.py").write_text(
        "def add_parser(subparsers):\n"
        "    p = subparsers.add_parser('hello')\n"
        "    p.set_defaults(func=lambda args: 7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("jnt_cli_probe2.hello",))
    assert cli.main(["hello"]) == 7


def test_console_script_end_to_end(tmp_path):
    # The installed entry point, as a user runs it; output must be what kubectl accepts.
    result = subprocess.run(
        [sys.executable, "-m", "jupyternetes.app.cli", "render", "-t", TEMPLATE, "-i", INSTANCE],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert len(list(yaml.safe_load_all(result.stdout))) == 2
    failed = subprocess.run(
        [sys.executable, "-m", "jupyternetes.app.cli", "render", "-t", str(tmp_path / "x"),
         "-i", INSTANCE], capture_output=True, text=True, check=False)
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


def test_yaml_dates_stay_strings_in_json(capsys, tmp_path):
    template, _ = seed_docs()
    template["spec"]["pods"][0]["annotations"] = {"since": "DATE"}
    text = yaml.safe_dump(template).replace("'DATE'", "2024-01-01").replace("DATE", "2024-01-01")
    path = write(tmp_path, "t.yaml", text)
    code, out, _ = run(capsys, "render", "-t", path, "-i", INSTANCE, "-o", "json")
    assert code == 0
    assert json.loads(out)["items"][1]["metadata"]["annotations"] == {"since": "2024-01-01"}
