"""`jupyternetes preview` end to end: the CLI as an admin runs it, against the real apiserver and
the real Pulumi engine, from files (-t/-i) and from the cluster (NAMESPACE/NAME)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from jupyternetes.crd import naming
from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import StackEngine, StackSettings
from jupyternetes.engine.state import backendurl, statedirs
from jupyternetes.render.objects import render
from tests.e2e.test_stacks import TOKEN, seed_docs

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def run_cli(pulumi_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyternetes.app.cli", "preview", *args],
        env=pulumi_env.env, cwd=REPO, capture_output=True, text=True, timeout=300)


def write_docs(tmp_path: Path, template: dict, instance: dict) -> tuple[Path, Path]:
    t, i = tmp_path / "template.yaml", tmp_path / "instance.yaml"
    t.write_text(yaml.safe_dump(template))
    i.write_text(yaml.safe_dump(instance))
    return t, i


def state_dir(pulumi_env) -> Path:
    path = backendurl.file_backend_path(pulumi_env.backend_url)
    assert path is not None
    return path


def engine_for(cluster, pulumi_env) -> StackEngine:
    return StackEngine(StackSettings(
        backend_url=pulumi_env.backend_url, passphrase=pulumi_env.passphrase,
        kubeconfig=str(cluster.kubeconfig), context=None,
        pulumi_home=str(pulumi_env.pulumi_home)), env=pulumi_env.env, timeout=300)


def test_preview_from_files(cluster, pulumi_env, namespace, tmp_path):
    template, instance = seed_docs(namespace, name="pv")
    tfile, ifile = write_docs(tmp_path, template, instance)
    common = ["-t", str(tfile), "-i", str(ifile), "--kubeconfig", str(cluster.kubeconfig),
              "--state-dir", str(state_dir(pulumi_env))]
    stack = naming.stack_name(namespace, "pv")

    # A new instance: everything is created; --exit-code says "changes".
    fresh = run_cli(pulumi_env, *common, "--exit-code")
    assert fresh.returncode == 1, fresh.stderr
    lines = fresh.stdout.splitlines()
    assert lines[0] == f"Stack {stack}:"
    assert any(line.split()[:4] == ["+", "create", "pvcs/workspace", "PersistentVolumeClaim"]
               for line in lines), fresh.stdout
    assert any(line.split()[:4] == ["+", "create", "pods/notebook", "Pod"] for line in lines)
    assert "pv-notebook" in fresh.stdout
    # Only the user's objects are counted (not Pulumi's stack and provider), and a create shows
    # what a reviewer wants to see of the new object.
    assert lines[-1] == "Changes: 2 create", fresh.stdout
    assert "container notebook: image quay.io/jupyter/datascience-notebook:hub-5.2.1" in \
        fresh.stdout
    assert "claims: pv-workspace" in fresh.stdout
    assert "storage 1Gi, access ReadWriteOnce" in fresh.stdout
    # Nothing was created, and the preview left no stack behind.
    core = client.CoreV1Api(cluster.api_client())
    assert core.list_namespaced_pod(namespace).items == []
    assert stack not in statedirs.checkpoint_stacks(state_dir(pulumi_env),
                                                    "jupyternetes-instances")
    assert statedirs.checkpoint_stacks(state_dir(pulumi_env), "jupyternetes-instances") == []
    # Without --exit-code a preview with changes is still a success.
    assert run_cli(pulumi_env, *common).returncode == 0

    # Deployed: no changes, exit 0 even with --exit-code.
    engine = engine_for(cluster, pulumi_env)
    parsed = Instance.from_dict(instance)
    up = engine.up(namespace, "pv", render(Template.from_dict(template), parsed),
                   engine.settings.secret_values(parsed.variables))
    assert up.succeeded, up.message
    same = run_cli(pulumi_env, *common, "--exit-code")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "(no changes)" in same.stdout

    # A new user name and a new token: the pod is replaced, the fields are listed, and the
    # token is shown as [secret], never in plain text.
    instance["spec"]["variables"]["jupyterhub.user.name"] = "bob"
    instance["spec"]["variables"]["jupyterhub.api_token"] = "0ther-t0ken-value"
    write_docs(tmp_path, template, instance)
    changed = run_cli(pulumi_env, *common, "--exit-code")
    assert changed.returncode == 1, changed.stderr
    assert any(line.split()[:3] == ["+-", "replace", "pods/notebook"]
               for line in changed.stdout.splitlines()), changed.stdout
    assert "-> bob" in changed.stdout  # new values come from the rendered objects
    assert "[secret]" in changed.stdout
    assert TOKEN not in changed.stdout and "0ther-t0ken-value" not in changed.stdout
    assert "replace" in changed.stdout.splitlines()[-1]


def test_preview_from_the_cluster(cluster, pulumi_env, namespace, crds_installed):
    template, instance = seed_docs(namespace, name="incluster")
    with cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        template.update(apiVersion=API_VERSION, kind=TEMPLATE_KIND)
        instance.update(apiVersion=API_VERSION, kind=INSTANCE_KIND)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                TEMPLATE_PLURAL, template)
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                INSTANCE_PLURAL, instance)
    common = ["--kubeconfig", str(cluster.kubeconfig), "--state-dir", str(state_dir(pulumi_env))]
    result = run_cli(pulumi_env, f"{namespace}/incluster", *common, "--exit-code")
    assert result.returncode == 1, result.stderr
    assert "incluster-notebook" in result.stdout and "create" in result.stdout

    missing = run_cli(pulumi_env, f"{namespace}/nope", *common)
    assert missing.returncode == 2
    assert missing.stderr.strip() == \
        f"jupyternetes preview: error: instance {namespace}/nope not found"
