"""`make demo-cluster`: the install as an admin runs it, on a real node on this machine.

A throwaway cluster with a real node (harness.node: kubelet + containerd + runc, kube-proxy,
CoreDNS; root, one per machine), the three images built here and imported into containerd
(tools/image/operator.sh, hub.sh, notebook.sh; cached by their inputs), then `pulumi up` of the
repository's deploy stack with `hub.enabled: true`: the operator, JupyterHub and the proxy run in
pods, notebook servers in containers. Prints the stack's `hubUrl` (proxy-public's cluster IP,
reachable from this machine through kube-proxy) and the shared password.

By default it proves the path once and stops: logs in as `demo` through proxy-public, starts
the server and waits until it answers through the proxy. `--keep` then leaves everything up
until Ctrl-C (open the URL in a browser on this machine; any user name, the printed password).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from harness import paths
from harness.cluster import DevCluster
from harness.pulumi_env import backend_url, pulumi_env

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 600.0


def build_image(script: str) -> tuple[Path, str]:
    """Run tools/image/<script> (a no-op when up to date); its archive and image name."""
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
    subprocess.run(["bash", str(REPO / "tools/image" / script)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    name = {"operator.sh": "operator", "hub.sh": "hub", "notebook.sh": "notebook"}[script]
    archive = paths.cache_dir() / "image" / f"jupyternetes-{name}.oci.tar"
    return archive, Path(f"{archive}.image").read_text().strip()


def pulumi(env: dict[str, str], stack: str, *args: str) -> str:
    proc = subprocess.run(["pulumi", *args, "--stack", stack, "--non-interactive"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise SystemExit(f"pulumi {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return proc.stdout.strip()


def wait(what: str, check, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if check():
                return
        time.sleep(1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def prove(url: str, password: str, user: str = "demo") -> None:
    session = requests.Session()
    wait("proxy-public answering", lambda: session.get(f"{url}hub/login", timeout=10).ok)
    resp = session.post(f"{url}hub/login", allow_redirects=False, timeout=30, data={
        "username": user, "password": password,
        "_xsrf": session.cookies.get("_xsrf", path="/hub/") or ""})
    if resp.status_code != 302:
        raise SystemExit(f"login returned HTTP {resp.status_code}: {resp.text[:300]}")
    t0 = time.monotonic()
    session.get(f"{url}hub/spawn", timeout=60)
    wait(f"{user}'s server through the proxy", lambda: '"version"' in session.get(
        f"{url}user/{user}/api", timeout=10).text)
    print(f"# {user}'s notebook server (a real container) answers through proxy-public, "
          f"{time.monotonic() - t0:.0f} s after the spawn", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.demo_cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster and the hub up until Ctrl-C")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    images = {name: build_image(f"{name}.sh") for name in ("notebook", "operator", "hub")}
    print(f"# images ready in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="jupyternetes-demo-cluster-") as tmp, \
            DevCluster(real_node=True,
                       node_images=tuple(a for a, _ in images.values())) as cluster:
        print(f"# cluster with its real node up in {cluster.timing['total']:.0f} s; "
              f"KUBECONFIG={cluster.kubeconfig}", file=sys.stderr)
        env = pulumi_env(backend_url(Path(tmp) / "state"), "demo-cluster")
        env["KUBECONFIG"] = str(cluster.kubeconfig)
        stack = "demo-cluster"
        stray = REPO / f"Pulumi.{stack}.yaml"
        try:
            pulumi(env, stack, "stack", "init", "--secrets-provider", "passphrase")
            for key, value in {
                    "image": images["operator"][1], "imagePullPolicy": "Never",
                    "shutdownGraceSeconds": "20", "hub.enabled": "true",
                    "hub.image": images["hub"][1], "hub.imagePullPolicy": "Never",
                    "singleuser.image": images["notebook"][1],
                    "singleuser.imagePullPolicy": "Never"}.items():
                pulumi(env, stack, "config", "set", "--path", key, value)
            t1 = time.monotonic()
            pulumi(env, stack, "up", "--yes", "--skip-preview")
            url = pulumi(env, stack, "stack", "output", "hubUrl")
            password = pulumi(env, stack, "stack", "output", "hubPassword", "--show-secrets")
            print(f"# pulumi up (operator, hub and proxy Ready) in {time.monotonic() - t1:.0f} s",
                  file=sys.stderr)
            print(f"hub: {url}  (any user name, password {password})")
            prove(url, password)
            if args.keep:
                print("# up until Ctrl-C", file=sys.stderr)
                stop = []
                signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
                with contextlib.suppress(KeyboardInterrupt):
                    while not stop:
                        time.sleep(1)
        finally:
            stray.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
