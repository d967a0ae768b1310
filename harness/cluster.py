"""A throwaway Kubernetes control plane on 127.0.0.1 for end-to-end tests and demos.

Runs the real binaries built by tools/harness/kube/build.sh: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (which plays the kubelet of one fake node, so
pods are scheduled, get an IP and reach Running). Nothing listens outside loopback. With
`real_node=True` a real node (harness.node) replaces kwok's, and the apiserver listens on the
node's bridge address (198.18.0.1), which pods can reach.

    with DevCluster() as c:          # or DevCluster().start() / .stop()
        print(c.kubeconfig, c.server)

Shell use (one cluster per cache folder, kept alive by a detached supervisor process):

    python -m harness.cluster up     # prints the kubeconfig and env lines
    python -m harness.cluster up --real-node   # kubelet + containerd + runc instead of kwok
    python -m harness.cluster env    # prints `export KUBECONFIG=...`
    python -m harness.cluster down   # stops every process, removes the folder
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from harness import paths
from jupyternetes.crd.labels import LABEL_PREFIX
from jupyternetes.engine.runtime.procs import pid_alive

if TYPE_CHECKING:
    from harness.node import RealNode

# The fake node kwok manages; the annotation is what kwok's node selector matches.
FAKE_NODE = "kwok-node-0"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# kwok's own client identity (pki/kwok.crt), so admission can tell its requests apart.
KWOK_USER = "jupyternetes-kwok"
# Addresses: only loopback and ranges made on this machine, never a private range (10/8,
# 172.16/12, 192.168/16), not even as a CIDR nothing dials. Services take 198.19.0.0/16, half of
# RFC 2544's test range 198.18.0.0/15 (the real node's pods use 198.18.0.0/24, see harness.node);
# a /16 because scale runs make thousands of Services. Cluster IPs are virtual: only a real node's
# kube-proxy ever answers one, on this machine.
SERVICE_CIDR = "198.19.0.0/16"
SERVICE_IP = "198.19.0.1"  # first address of SERVICE_CIDR: the `kubernetes` service
# kwok's pods: a loopback range, so a client that dials a simulated pod's IP is refused on this
# machine instead of sending packets off it. loopback_cidr() never yields 127.0.x.0 (its ports
# are >= 256), so these never meet the loopback node's pods; kwok counts up from the first
# address without a bound, and the /17 leaves room for 32k pods.
POD_CIDR = "127.0.128.0/17"
# The loopback node (opt-in): kwok gives its pods IPs from its podCIDR, a loopback range, and
# harness.podrunner runs their containers as local processes bound to those IPs.
# Tainted, so only pods that tolerate it (and select it by the label) land there.
LOOPBACK_NODE = "loopback-node-0"
LOOPBACK_KEY = f"{LABEL_PREFIX}/loopback-runner"
START_TIMEOUT = 90.0  # seconds; a warm start takes well under 30 s
REAL_NODE_START_TIMEOUT = 300.0  # ~50 s idle; image import and kubelet's first sync when loaded


class DevClusterError(RuntimeError):
    """The dev cluster failed to start; the message carries the tail of each component's log."""


# --------------------------------------------------------------------------------------------
# Certificates (openssl CLI, so the harness needs no Python crypto dependency)
# --------------------------------------------------------------------------------------------

_REQ_CONFIG = "[req]\ndistinguished_name = dn\n[dn]\n"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DevClusterError(f"openssl {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")


def _new_key(pki: Path, name: str) -> None:
    # EC P-256: generated in milliseconds (RSA takes noticeably longer on a busy 2-core box).
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=pki)


def _signed_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    """Key + certificate `name` signed by the CA in `pki`, with the given v3 extensions."""
    _new_key(pki, name)
    (pki / "req.cnf").write_text(_REQ_CONFIG)
    (pki / f"{name}.ext").write_text(f"[ext]\n{extensions}\n")
    _openssl("req", "-new", "-config", "req.cnf", "-key", f"{name}.key", "-subj", subject,
             "-out", f"{name}.csr", cwd=pki)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
             "-extfile", f"{name}.ext", "-extensions", "ext", "-out", f"{name}.crt", cwd=pki)


def make_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """CA, apiserver serving cert (also valid for `extra_ips`), admin client cert
    (system:masters), service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "ca.cnf").write_text(
        _REQ_CONFIG + "[ext]\nbasicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n"
        "subjectKeyIdentifier = hash\n"
    )
    _new_key(pki, "ca")
    # `req -x509` reads its extensions from -config, so one file holds both sections.
    _openssl("req", "-x509", "-new", "-config", "ca.cnf", "-extensions", "ext", "-key", "ca.key",
             "-subj", "/CN=jupyternetes-dev-ca", "-days", "3650", "-out", "ca.crt", cwd=pki)
    sans = ",".join(
        ["IP:127.0.0.1", f"IP:{SERVICE_IP}", *(f"IP:{ip}" for ip in extra_ips),
         "DNS:localhost", "DNS:kubernetes",
         "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
         "DNS:kubernetes.default.svc.cluster.local"]
    )
    _signed_cert(pki, "apiserver", "/CN=kube-apiserver",
                 "keyUsage = critical, digitalSignature, keyEncipherment\n"
                 f"extendedKeyUsage = serverAuth\nsubjectAltName = {sans}")
    for name, subject in (("admin", "/O=system:masters/CN=jupyternetes-admin"),
                          ("kwok", f"/O=system:masters/CN={KWOK_USER}")):
        _signed_cert(pki, name, subject, "keyUsage = critical, digitalSignature, "
                     "keyEncipherment\nextendedKeyUsage = clientAuth")
    _new_key(pki, "sa")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str = "admin") -> None:
    """Kubeconfig with the certificates embedded, so it stays valid when copied elsewhere;
    `user` names the client certificate in `pki` (<user>.crt, <user>.key)."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "jupyternetes-dev", "cluster": {
            "server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "jupyternetes-admin", "user": {
            "client-certificate-data": b64(f"{user}.crt"),
            "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "jupyternetes-dev", "context": {
            "cluster": "jupyternetes-dev", "user": "jupyternetes-admin", "namespace": "default"}}],
        "current-context": "jupyternetes-dev",
    }
    # JSON is valid YAML; every kubeconfig reader (client-go, python client, kubectl) accepts it.
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def kwok_stale_delete_guard() -> list[tuple[str, dict[str, object]]]:
    """An admission policy and its binding, each with its resource (plural), that refuse kwok
    the delete of a pod that is not terminating.

    kwok v0.8.0 ends a terminating pod with a delete by name, grace 0, and no UID precondition
    (a kubelet sends one, kubernetes#25224). A job it queued from a late watch event of a pod
    that is already gone then deletes the next pod of that name: a notebook re-created under its
    old name vanished at random. Every delete kwok has reason to make is of a terminating pod
    (its pod-delete stage matches on deletionTimestamp), so refusing the others drops only the
    stale jobs (kwok does not retry a 403)."""
    name = "jupyternetes-harness-kwok-deletes-only-terminating-pods"
    return [
        ("validatingadmissionpolicies",
         {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
          "metadata": {"name": name},
          "spec": {
              "failurePolicy": "Fail",
              "matchConstraints": {"resourceRules": [{
                  "apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"],
                  "resources": ["pods"]}]},
              "matchConditions": [{"name": "kwok",
                                   "expression": f"request.userInfo.username == '{KWOK_USER}'"}],
              "validations": [{
                  "expression": "has(oldObject.metadata.deletionTimestamp)",
                  "reason": "Forbidden",
                  "message": "kwok may only end a pod that is terminating; this pod is not "
                             "terminating, so the delete is a stale job for an earlier pod of "
                             "the same name (kwok deletes by name, without a UID precondition)"}],
          }}),
        ("validatingadmissionpolicybindings",
         {"apiVersion": "admissionregistration.k8s.io/v1",
          "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
          "spec": {"policyName": name, "validationActions": ["Deny"]}}),
    ]


def loopback_cidr(apiserver_port: int) -> str:
    """A /24 of 127.0.0.0/8 unique to one live cluster on this machine (its apiserver port is),
    so two clusters' loopback pods never share an IP:port. Ports below 256 are not ephemeral;
    they fall back to a fixed range."""
    if not 256 <= apiserver_port <= 65535:
        return "127.42.0.0/24"
    return f"127.{apiserver_port >> 8}.{apiserver_port & 255}.0/24"


def loopback_node_manifest(name: str, pod_cidr: str) -> dict[str, object]:
    """A kwok-managed node whose pods get loopback IPs (see LOOPBACK_KEY)."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                "kubernetes.io/os": "linux", LOOPBACK_KEY: "true"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr],
                 "taints": [{"key": LOOPBACK_KEY, "value": "true", "effect": "NoSchedule"}]},
    }


def loopback_placement() -> dict[str, object]:
    """Pod spec fields that put a pod on the loopback node (merge into a template's pod spec)."""
    return {"nodeSelector": {LOOPBACK_KEY: "true"},
            "tolerations": [{"key": LOOPBACK_KEY, "operator": "Equal", "value": "true",
                             "effect": "NoSchedule"}]}


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Loaded here, not in the forked child: dlopen after fork in a threaded parent can deadlock.
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the launching process dies, even by SIGKILL,
    so a crashed pytest never leaves a control plane behind. Also a new process group, so stop()
    reaches anything the component forks. (The kernel ties this to the launching *thread*: start
    a DevCluster from the main thread or one that lives as long as the cluster.)"""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Component:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None  # None: inherit this process's environment
    cwd: Path | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, close_fds=True, env=self.env, cwd=self.cwd,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # setsid() made the child its own group leader
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while a forked child lingers in the group: sweep it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


# --------------------------------------------------------------------------------------------
# HTTP against the apiserver (stdlib only, so starting the cluster needs no client library)
# --------------------------------------------------------------------------------------------


def _ssl_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _request(url: str, ctx: ssl.SSLContext | None, method: str = "GET",
             body: dict[str, object] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


def _fast_tmp() -> str | None:
    """tmpfs for etcd's data: fsync on a shared disk is what makes etcd slow."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _sweep_stale() -> None:
    """Remove folders left by dev clusters whose owning process was killed (SIGKILL skips
    atexit; the components themselves die with it via PR_SET_PDEATHSIG). Folder names carry
    the owner's pid."""
    for parent in {Path(tempfile.gettempdir()), *([Path(d)] if (d := _fast_tmp()) else [])}:
        for d in parent.glob("jupyternetes-*-*-*"):
            kind, _, rest = d.name.removeprefix("jupyternetes-").partition("-")
            pid = rest.partition("-")[0]
            if kind in ("cluster", "etcd") and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)


@dataclass
class DevCluster:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok on 127.0.0.1.

    `root` holds pki/, the kubeconfig and one log per component; it is created (and, unless
    `keep` is set, removed on stop) by this object."""

    root: Path | None = None
    # JUPYTERNETES_KEEP_CLUSTER=1 keeps the folder (logs, kubeconfig, pki) after stop.
    keep: bool = field(default_factory=lambda: os.environ.get("JUPYTERNETES_KEEP_CLUSTER") == "1")
    apiserver_port: int = 0
    # Also create LOOPBACK_NODE (pods there are run by harness.podrunner).
    loopback_node: bool = False
    # A real node (harness.node: kubelet + containerd + runc + CNI, kube-proxy, CoreDNS) instead
    # of kwok's fake one; needs root, one per machine. The apiserver then listens on the node's
    # bridge address (pods cannot reach 127.0.0.1), which is also where tests reach it.
    real_node: bool = False
    # OCI archives imported into the real node's containerd (k8s.io namespace) before kubelet.
    node_images: tuple[Path, ...] = ()
    node: RealNode | None = None
    timing: dict[str, float] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)
    _etcd_dir: Path | None = None
    _timeout: float = START_TIMEOUT
    _owns_root: bool = False
    _stopped: bool = False

    @property
    def kubeconfig(self) -> Path:
        assert self.root is not None
        return self.root / "kubeconfig"

    @property
    def kwok_kubeconfig(self) -> Path:
        """kwok's own credentials (user KWOK_USER), see kwok_stale_delete_guard."""
        assert self.root is not None
        return self.root / "kwok.kubeconfig"

    @property
    def host(self) -> str:
        """The apiserver's address: loopback, or the real node's bridge address."""
        if self.real_node:
            from harness.node import GATEWAY
            return GATEWAY
        return "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    # ---- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float | None = None) -> DevCluster:
        t0 = time.monotonic()
        if timeout is None:
            timeout = REAL_NODE_START_TIMEOUT if self.real_node else START_TIMEOUT
        self._timeout = timeout
        _sweep_stale()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix=f"jupyternetes-cluster-{os.getpid()}-"))
            self._owns_root = True
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._start(timeout, t0)
        except BaseException:
            # Keep the logs for the message, then leave nothing running.
            self.stop(remove=False)
            raise
        self.timing["total"] = time.monotonic() - t0
        return self

    def _start(self, timeout: float, t0: float) -> None:
        assert self.root is not None
        deadline = t0 + timeout
        pki = self.root / "pki"
        if self.real_node:
            from harness.node import RealNode
            # The bridge first: the apiserver binds to its address.
            self.node = RealNode(pki=pki, log_dir=self.root, images=self.node_images)
            self.node.acquire()
            self.timing["node-network"] = time.monotonic() - t0
        make_pki(pki, extra_ips=(self.host,) if self.real_node else ())
        self.timing["pki"] = time.monotonic() - t0

        etcd_port, etcd_peer = free_port(), free_port()
        self.apiserver_port = free_port()
        self._etcd_dir = Path(tempfile.mkdtemp(prefix=f"jupyternetes-etcd-{os.getpid()}-",
                                               dir=_fast_tmp()))
        write_kubeconfig(self.kubeconfig, self.server, pki)
        write_kubeconfig(self.kwok_kubeconfig, self.server, pki, user="kwok")
        ctx = _ssl_context(pki)

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = self._component("etcd", [
            str(paths.tool("etcd")), "--name=node0", f"--data-dir={self._etcd_dir}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=node0=http://127.0.0.1:{etcd_peer}",
            "--auto-compaction-retention=1", "--quota-backend-bytes=4294967296",
            # Throwaway data on tmpfs: durability buys nothing here, fsync costs seconds.
            "--unsafe-no-fsync=true",
            "--logger=zap", "--log-outputs=stderr",
        ])
        if self.real_node:
            node_flags = [
                # The `kubernetes` Service gets the bridge address as its endpoint (pods dial it).
                "--endpoint-reconciler-type=lease",
                # Else it resolves the node's name through the host's resolver.
                "--kubelet-preferred-address-types=InternalIP",
                # logs/exec: the apiserver authenticates to kubelet as the admin.
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
            ]
        else:
            # The `kubernetes` Service may not have a loopback endpoint (validation refuses
            # 127.0.0.0/8); nothing in-cluster dials it here, so publish none.
            node_flags = ["--endpoint-reconciler-type=none"]
        apiserver = self._component("kube-apiserver", [
            str(paths.tool("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.host}", f"--advertise-address={self.host}",
            f"--secure-port={self.apiserver_port}", f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            *node_flags,
            # Single user on loopback: no request throttling, no profiling endpoints.
            "--enable-priority-and-fairness=false", "--profiling=false",
            "--max-requests-inflight=0", "--max-mutating-requests-inflight=0",
        ])
        etcd.start()
        self._wait("etcd /health", lambda: _request(f"{etcd_url}/health", None)[0] == 200,
                   deadline, etcd)
        self.timing["etcd"] = time.monotonic() - t0
        apiserver.start()
        self._wait("kube-apiserver /readyz",
                   lambda: _request(f"{self.server}/readyz", ctx)[0] == 200, deadline, apiserver)
        self.timing["apiserver"] = time.monotonic() - t0
        for plural, doc in kwok_stale_delete_guard():
            status, body = _request(
                f"{self.server}/apis/admissionregistration.k8s.io/v1/{plural}", ctx, "POST", doc)
            if status not in (201, 409):
                raise self._failure(f"creating {doc['kind']} returned HTTP {status}: "
                                    f"{body[:500]!r}")

        kc = str(self.kubeconfig)
        for comp in (
            self._component("kube-controller-manager", [
                str(paths.tool("kube-controller-manager")), f"--kubeconfig={kc}",
                "--leader-elect=false", "--secure-port=0", "--controllers=*",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
                "--kube-api-qps=500", "--kube-api-burst=1000",
            ]),
            self._component("kube-scheduler", [
                str(paths.tool("kube-scheduler")), f"--kubeconfig={kc}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--kube-api-qps=500", "--kube-api-burst=1000",
            ]),
            self._component("kwok", [
                str(paths.tool("kwok")), f"--kubeconfig={self.kwok_kubeconfig}",
                f"--config={paths.tools_dir() / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=0",
            ]),
        ):
            comp.start()

        # The fake node: no taint, so ordinary pods land on it; kwok fills in its status. With a
        # real node there is none: every pod runs in a real container.
        nodes: list[dict[str, object]] = [] if self.real_node else [{
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": FAKE_NODE, "annotations": {KWOK_ANNOTATION: "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": FAKE_NODE,
                                    "kubernetes.io/os": "linux"}},
        }]
        if self.loopback_node:
            nodes.append(loopback_node_manifest(LOOPBACK_NODE, self.loopback_cidr))
        for node in nodes:
            name = str(node["metadata"]["name"])  # type: ignore[index]
            status, body = _request(f"{self.server}/api/v1/nodes", ctx, "POST", node)
            if status not in (201, 409):
                raise self._failure(f"creating node {name} returned HTTP {status}: {body[:500]!r}")
        for node in nodes:
            name = str(node["metadata"]["name"])  # type: ignore[index]
            self._wait(f"node {name} Ready (kwok)",
                       lambda name=name: self._node_ready(ctx, name), deadline)
        if self.node is not None:
            self.node.start(self, deadline)
            # Dynamic PVCs: the default StorageClass and its provisioner (harness.provisioner).
            from harness.node import NODE_NAME
            from harness.provisioner import STORAGE_CLASS
            provisioner = self._component("provisioner", [
                sys.executable, "-m", "harness.provisioner", str(self.kubeconfig),
                "--node-name", NODE_NAME])
            provisioner.cwd = Path(__file__).resolve().parents[1]
            provisioner.start()
            sc_url = f"{self.server}/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}"
            self._wait(f"StorageClass {STORAGE_CLASS} (harness.provisioner)",
                       lambda: _request(sc_url, ctx)[0] == 200, deadline, provisioner)
            # Seconds from the node's own start (after the control plane).
            self.timing.update({f"node-{k}": v for k, v in self.node.timing.items()})
        self.timing["node"] = time.monotonic() - t0
        sa_url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        self._wait("service account default/default (controller-manager)",
                   lambda: _request(sa_url, ctx)[0] == 200, deadline)
        self.timing["serviceaccount"] = time.monotonic() - t0

    @property
    def loopback_cidr(self) -> str:
        """Pod CIDR of this cluster's loopback node (unique among live clusters here)."""
        return loopback_cidr(self.apiserver_port)

    def _node_ready(self, ctx: ssl.SSLContext, name: str) -> bool:
        status, body = _request(f"{self.server}/api/v1/nodes/{name}", ctx)
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _component(self, name: str, args: list[str]) -> Component:
        assert self.root is not None
        comp = Component(name, args, self.root / f"{name}.log")
        self.components.append(comp)
        return comp

    def _wait(self, what: str, check: Callable[[], bool], deadline: float,
              comp: Component | None = None) -> None:
        while time.monotonic() < deadline:
            for c in self.components:
                if c.proc is not None and not c.running():
                    raise self._failure(f"{c.name} exited with code {c.proc.returncode} "
                                        f"while waiting for {what}")
            if check():
                return
            time.sleep(0.1)
        raise self._failure(f"timed out after {self._timeout:.0f} s waiting for {what}")

    def _failure(self, message: str) -> DevClusterError:
        logs = "\n".join(
            f"----- {c.name} ({c.log}) -----\n{c.log_tail()}" for c in self.components
        )
        return DevClusterError(f"dev cluster in {self.root}: {message}\n{logs}")

    def stop(self, remove: bool = True) -> None:
        """Kill every component (whole process groups) and remove the folders we created."""
        if self._stopped:
            return
        self._stopped = True
        crashed = [c for c in self.components if c.proc is not None and not c.running()]
        if crashed and self.timing.get("total"):
            # A component died while tests ran: its log explains the errors they saw.
            print(self._failure("components exited before stop: "
                                + ", ".join(f"{c.name} (code {c.proc.returncode})"
                                            for c in crashed if c.proc is not None)),
                  file=sys.stderr)
        # Reverse order: kwok and controllers first, the datastore last.
        for comp in reversed(self.components):
            comp.stop()
        if self.node is not None:
            problems = self.node.release()
            if problems:
                print(f"real node teardown left: {'; '.join(problems)}", file=sys.stderr)
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
        if remove and self._owns_root and not self.keep and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.components if c.proc is not None]


# --------------------------------------------------------------------------------------------
# Shell interface: a detached supervisor per cache folder
# --------------------------------------------------------------------------------------------


def shell_dir() -> Path:
    """Folder of the shell-managed cluster (fixed, so `env` and `down` find it)."""
    return paths.cache_dir() / "cluster"


def _state_file(root: Path) -> Path:
    return root / "state.json"


def _env_lines(kubeconfig: Path) -> str:
    return f"export KUBECONFIG={kubeconfig}\nexport JUPYTERNETES_E2E_KUBECONFIG={kubeconfig}\n"


def _serve(root: Path, real_node: bool = False) -> int:
    """Supervisor body: start the cluster, record state, stay until SIGTERM/SIGINT."""
    cluster = DevCluster(root=root, keep=True, real_node=real_node)
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
    except (DevClusterError, RuntimeError) as e:
        (root / "error.txt").write_text(str(e))
        return 1
    _state_file(root).write_text(json.dumps({
        "supervisor": os.getpid(), "pids": cluster.pids(), "server": cluster.server,
        "kubeconfig": str(cluster.kubeconfig), "timing": cluster.timing,
    }, indent=2))
    while not stop_requested and all(c.running() for c in cluster.components):
        time.sleep(0.5)
    cluster.stop()
    return 0


def cmd_up(root: Path, timeout: float = START_TIMEOUT, real_node: bool = False) -> int:
    state = _state_file(root)
    if state.exists() and pid_alive(json.loads(state.read_text())["supervisor"]):
        print(f"# dev cluster already up in {root}", file=sys.stderr)
        print(_env_lines(root / "kubeconfig"), end="")
        return 0
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with (root / "supervisor.log").open("ab") as log:
        # A new session: the supervisor outlives this shell command; its components die with it.
        subprocess.Popen(
            [sys.executable, "-m", "harness.cluster", "_serve", str(root),
             *(["--real-node"] if real_node else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    if real_node:
        timeout = max(timeout, REAL_NODE_START_TIMEOUT)
    deadline = time.monotonic() + timeout + 10
    while time.monotonic() < deadline:
        if state.exists():
            info = json.loads(state.read_text())
            print(f"# dev cluster up in {info['timing']['total']:.1f} s: {info['server']}",
                  file=sys.stderr)
            print(f"# kubeconfig: {info['kubeconfig']}", file=sys.stderr)
            print(_env_lines(Path(info["kubeconfig"])), end="")
            return 0
        if (root / "error.txt").exists():
            print((root / "error.txt").read_text(), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"dev cluster in {root} did not come up; see {root}/*.log", file=sys.stderr)
    cmd_down(root)
    return 1


def cmd_down(root: Path) -> int:
    state = _state_file(root)
    if state.exists():
        info = json.loads(state.read_text())
        sup = int(info["supervisor"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(sup) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Belt and braces: the components are group leaders; kill any group still there.
        for pid in [sup, *info.get("pids", [])]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    print(f"# dev cluster in {root} is down", file=sys.stderr)
    return 0


def cmd_env(root: Path) -> int:
    if not _state_file(root).exists():
        print(f"no dev cluster in {root}; start one with "
              "`python -m harness.cluster up`", file=sys.stderr)
        return 1
    print(_env_lines(root / "kubeconfig"), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.cluster",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "env", "_serve"])
    parser.add_argument("dir", nargs="?", type=Path, default=None,
                        help=f"cluster folder (default {shell_dir()})")
    parser.add_argument("--real-node", action="store_true",
                        help="up: a real node (kubelet + containerd + runc; root, one per "
                             "machine, tools/harness/node/build.sh) instead of kwok's")
    args = parser.parse_args(argv)
    root = args.dir or shell_dir()
    if args.command == "_serve":
        return _serve(root, args.real_node)
    if args.command == "up":
        return cmd_up(root, real_node=args.real_node)
    return {"down": cmd_down, "env": cmd_env}[args.command](root)


if __name__ == "__main__":
    sys.exit(main())
