"""Run the operator from the built image's root filesystem against a harness cluster.

Proves the image's contents without a container runtime: the image (built by `make image`) is
mounted with buildah, and its `jupyternetes operator` runs chrooted into it the way the deploy
stack's Deployment runs it: as user 10001, read-only root filesystem, writable tmpfs volumes for
the state dir, PULUMI_HOME and /tmp, the provider plugin linked into PULUMI_HOME by the same
`ln -sfn` the init container runs, the passphrase in the environment. The seed instance must
reach Completed and Ready, then be deleted. Prints one JSON object with what it saw.

Usage (root, after `make image`): .venv/bin/python tools/image/smoke.py [IMAGE]
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kubernetes import client

from harness.cluster import DevCluster, free_port
from harness.crds import apply_crds
from harness.examples import load_example, strip_server_fields
from harness.operator_process import poll
from jupyternetes.crd.definitions import (
    GROUP,
    INSTANCE_PLURAL,
    TEMPLATE_PLURAL,
    VERSION,
    load_crd_documents,
)
from jupyternetes.deploy.manifests import PLUGINS_DIR, PULUMI_HOME, RUN_AS, STATE_DIR

BUILDAH = ["buildah", "--storage-driver", "vfs"]
SEED = "8dc366d8a0f05869bfdb6e7eb3d83f65"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def chrooted_operator(root: str, kubeconfig: Path, port: int, log: Path) -> subprocess.Popen:
    inside = (f"exec chroot --userspec={RUN_AS}:{RUN_AS} {root} /usr/bin/env -i "
              f"PATH=/opt/jupyternetes/bin:/usr/local/bin:/usr/bin:/bin HOME=/tmp TMPDIR=/tmp "
              "PYTHONDONTWRITEBYTECODE=1 PULUMI_CONFIG_PASSPHRASE=smoke-test-passphrase "
              f"jupyternetes operator --kubeconfig /tmp/kubeconfig --state-dir {STATE_DIR} "
              f"--pulumi-home {PULUMI_HOME} --namespace default --health-port {port} "
              f"--metrics-port {port} --bind-address 127.0.0.1 --log-format text")
    owner = f"uid={RUN_AS},gid={RUN_AS},mode=0700"
    script = " && ".join([
        # A private mount namespace: the read-only view and the volumes vanish with the process.
        f"mount --bind {root} {root}", f"mount -o remount,bind,ro {root}",
        f"mount -t proc proc {root}/proc", f"mount --rbind /dev {root}/dev",
        f"mount -t tmpfs -o mode=1777 tmp {root}/tmp",
        f"mount -t tmpfs -o {owner} state {root}{STATE_DIR}",
        f"mount -t tmpfs -o {owner} pulumi-home {root}{PULUMI_HOME}",
        f"cp {shlex.quote(str(kubeconfig))} {root}/tmp/kubeconfig",
        f"chown {RUN_AS} {root}/tmp/kubeconfig",
        # What the Deployment's init container does.
        f"chroot --userspec={RUN_AS}:{RUN_AS} {root} ln -sfn {PLUGINS_DIR} {PULUMI_HOME}/plugins",
        f"touch {root}/probe 2>/dev/null && echo 'root filesystem is writable' >&2 && exit 3 "
        "|| true",
        inside])
    out = log.open("wb")
    return subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=out, stderr=subprocess.STDOUT)


def main(image: str) -> int:
    container = sh(*BUILDAH, "from", "--pull-never", image)
    root = sh(*BUILDAH, "mount", container)
    figures: dict = {"image": image}
    proc = None
    log = Path("/tmp") / f"jupyternetes-image-smoke-{int(time.time())}.log"
    try:
        figures["pulumi"] = sh("chroot", root, "/usr/local/bin/pulumi", "version")
        with DevCluster() as cluster, cluster_api(cluster) as api:
            apply_crds(api, load_crd_documents())
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace({"metadata": {"name": "kadense"}})
            custom.create_namespaced_custom_object(
                GROUP, VERSION, "kadense", TEMPLATE_PLURAL,
                strip_server_fields(load_example("seed-template.yaml")))
            core.create_persistent_volume({
                "metadata": {"name": "smoke-pv"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "storageClassName": "", "hostPath": {"path": "/tmp/smoke-pv"},
                         "claimRef": {"namespace": "default", "name": f"{SEED}-workspace"}}})
            port = free_port()
            started = time.monotonic()
            proc = chrooted_operator(root, cluster.kubeconfig, port, log)
            healthy = poll(lambda: http_ok(port, "/healthz"), 90)
            assert healthy, f"no /healthz from the chrooted operator; log {log}"
            figures["healthz_seconds"] = round(time.monotonic() - started, 1)
            instance = strip_server_fields(load_example("seed-instance.yaml"))
            custom.create_namespaced_custom_object(GROUP, VERSION, "default", INSTANCE_PLURAL,
                                                   instance)
            started = time.monotonic()

            def ready() -> dict | None:
                obj = custom.get_namespaced_custom_object(
                    GROUP, VERSION, "default", INSTANCE_PLURAL, SEED)
                status = obj.get("status") or {}
                conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
                if status.get("podsProvisioned") == "Completed" and \
                        conditions.get("Ready") == "True":
                    return status
                return None

            status = poll(ready, 300, 0.5)
            assert status, f"seed instance not Completed and Ready; log {log}"
            figures["ready_seconds"] = round(time.monotonic() - started, 1)
            figures["pod"] = status["pods"]["notebook"]["resourceName"]
            custom.delete_namespaced_custom_object(GROUP, VERSION, "default", INSTANCE_PLURAL,
                                                   SEED)
            gone = poll(lambda: not custom.list_namespaced_custom_object(
                GROUP, VERSION, "default", INSTANCE_PLURAL)["items"], 180, 0.5)
            assert gone, f"seed instance not deleted; log {log}"
            figures["deleted"] = True
            figures["readyz"] = http_ok(port, "/readyz")
            figures["metrics_bytes"] = len(http_get(port, "/metrics"))
            # SIGTERM while the cluster still answers, as a pod is stopped.
            proc.terminate()
            figures["exit_code"] = proc.wait(60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        subprocess.run([*BUILDAH, "umount", container], capture_output=True)
        subprocess.run([*BUILDAH, "rm", container], capture_output=True)
        figures["log"] = str(log)
    print(json.dumps(figures))
    return 0


def cluster_api(cluster: DevCluster) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


def http_ok(port: int, path: str) -> bool:
    try:
        http_get(port, path)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "jupyternetes/operator:0.1.0"))
