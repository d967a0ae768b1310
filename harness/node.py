"""A real Kubernetes node on this machine: containerd + runc + CNI bridge + kubelet + kube-proxy,
and CoreDNS for cluster DNS, joined to a harness.cluster.DevCluster (`DevCluster(real_node=True)`).

Needs root and the tools of tools/harness/node/build.sh. containerd, runc, CNI and kubelet keep
some state in fixed host paths whatever their configuration says (/run/containerd/{s,runc},
/var/lib/kubelet/{pki,device-plugins}, /var/lib/cni), so there is one real node per machine: a
lock file guards it, and `teardown()` (also run at start, for the remains of a node whose owner
was killed) removes every process, mount, network namespace, link, firewall rule and folder the
node made, and restores the host sysctls kubelet and kube-proxy change.

Addresses (never a private range, never routed off this machine): pods in POD_SUBNET on the
bridge BRIDGE, whose address GATEWAY also serves the apiserver, the kubelet and CoreDNS (pods
cannot reach the host's 127.0.0.1); Services in harness.cluster.SERVICE_CIDR. The bridge plugin
runs with isGateway and ipMasq off, pods get one route (TEST_NET via GATEWAY, no default route),
forwarding is switched on for the bridge alone (the global ip_forward stays as it is), and a
firewall chain drops anything forwarded between the bridge and any other interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import paths
from harness.cluster import _signed_cert, _ssl_context, free_port, write_kubeconfig

if TYPE_CHECKING:
    from harness.cluster import DevCluster

NODE_NAME = "jupyternetes-node-0"
BRIDGE = "jnbr0"
TEST_NET = "198.18.0.0/15"  # RFC 2544: reserved for network tests, not a private range
POD_SUBNET = "198.18.0.0/24"
GATEWAY = "198.18.0.1"  # the host on the bridge: apiserver, kubelet, CoreDNS
CLUSTER_DOMAIN = "cluster.local"
FIREWALL_CHAIN = "JUPYTERNETES-NODE"
FIREWALL_TABLE = "mangle"
# Fixed host paths (see the module docstring) and the node's own folders.
STATE_ROOT = Path("/var/lib/jupyternetes-node")
RUN_ROOT = Path("/run/jupyternetes-node")
LOCK_FILE = Path("/run/jupyternetes-node.lock")
FIXED_PATHS = (Path("/run/containerd"), Path("/var/lib/kubelet"), Path("/var/lib/cni"))
# Host sysctls kubelet (and kube-proxy) set; saved at start, restored by teardown.
HOST_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
                "net.ipv4.conf.all.route_localnet", "net.ipv4.ip_forward")
SYSCTL_SAVE = RUN_ROOT.parent / "jupyternetes-node.sysctls.json"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
RUNC_ROOT = Path("/run/containerd/runc/k8s.io")
CNI_NETNS_PREFIX = "cni-"


class RealNodeError(RuntimeError):
    """The real node failed to start or is already running elsewhere on this machine."""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RealNodeError(f"`{' '.join(args)}` failed ({proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = HOST_SYSCTLS) -> dict[str, str]:
    out = {}
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = _sysctl_path(name).read_text().strip()
    return out


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


# --------------------------------------------------------------------------------------------
# Configuration documents (pure functions of the node's paths and addresses)
# --------------------------------------------------------------------------------------------


def cni_conflist(host_local_dir: Path) -> dict[str, object]:
    """The pod network: one bridge, host-local IPAM, the test range as the pods' only route."""
    return {
        "cniVersion": "1.0.0", "name": "jupyternetes",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE,
            # The host is not the pods' gateway to anywhere, and nothing is masqueraded.
            "isGateway": False, "isDefaultGateway": False, "ipMasq": False,
            # A pod reaching itself through a Service comes back through its own port.
            "hairpinMode": True,
            "ipam": {
                "type": "host-local", "dataDir": str(host_local_dir),
                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY,
                             "rangeStart": POD_SUBNET.replace("0/24", "10")}]],
                "routes": [{"dst": TEST_NET, "gw": GATEWAY}],
            },
        }],
    }


def containerd_config(root: Path, state: Path, socket: Path, cni_conf_dir: Path,
                      sandbox_image: str) -> str:
    """containerd 2.4 configuration (version 4, its own: the servers are plugins): CRI only,
    runc via cgroupfs, CNI from cni_conf_dir, the locally built sandbox image."""
    return f"""version = 4
root = "{root}"
state = "{state}"
# NRI would listen on a fixed host socket (/var/run/nri/nri.sock); nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[plugins.'io.containerd.server.v1.grpc']
  address = "{socket}"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "{socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{root}/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.runtime']
  # Writing oom_score_adj below the shim's own is denied here (no CAP_SYS_RESOURCE); without
  # this runc fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces under containerd's state folder, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
"""


def kubelet_config(pki: Path, socket: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # Serve on the bridge address only (the default 0.0.0.0 would listen on every NIC).
        "address": GATEWAY, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "tlsCertFile": str(pki / "kubelet.crt"), "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        # This machine: cgroup v1 (kubelet >= 1.35 refuses it unless told), swap allowed, and
        # no host resolv.conf for pods (cluster DNS only; nothing resolves beyond it).
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "resolvConf": "", "clusterDNS": [GATEWAY], "clusterDomain": CLUSTER_DOMAIN,
        # A shared test machine: never evict or garbage-collect images for disk pressure.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "rotateCertificates": False,
        "nodeStatusUpdateFrequency": "5s", "syncFrequency": "10s",
        "fileCheckFrequency": "10s", "maxPods": 110,
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables", "clusterCIDR": POD_SUBNET,
        "hostnameOverride": NODE_NAME, "bindAddress": GATEWAY,
        "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts answer on the bridge address only, never on localhost or another NIC.
        "nodePortAddresses": [f"{GATEWAY}/32"],
        "iptables": {"localhostNodePorts": False},
        # Zeros: leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    """Cluster DNS on the bridge address; answers cluster.local and reverse lookups of the test
    range from the apiserver, forwards nothing (there is no upstream)."""
    return f""".:53 {{
    bind {GATEWAY}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    reload
    loadbalance
}}
"""


def firewall_rules() -> list[list[str]]:
    """iptables rules of FIREWALL_CHAIN: nothing forwarded between the bridge and another NIC."""
    return [["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
            ["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"]]


# --------------------------------------------------------------------------------------------
# Host network setup and teardown
# --------------------------------------------------------------------------------------------


def setup_network() -> None:
    """The bridge with the gateway address (before the apiserver binds to it), forwarding on
    the bridge alone, and the firewall chain."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{GATEWAY}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # The whole test range onto the bridge: a packet for an address nobody holds there (a
    # Service IP kube-proxy has no rule for yet) dies here instead of leaving by the default route.
    run("ip", "route", "replace", TEST_NET, "dev", BRIDGE)
    write_sysctl(f"net.ipv4.conf.{BRIDGE}.forwarding", "1")
    # In the mangle table, which runs before filter: kube-proxy keeps its own jumps first in
    # filter's FORWARD, and its ACCEPTs there must not come before this DROP.
    ipt = ("iptables", "-w", "-t", FIREWALL_TABLE)
    if run(*ipt, "-n", "-L", FIREWALL_CHAIN, check=False).returncode != 0:
        run(*ipt, "-N", FIREWALL_CHAIN)
    run(*ipt, "-F", FIREWALL_CHAIN)
    for rule in firewall_rules():
        run(*ipt, "-A", FIREWALL_CHAIN, *rule)
    if run(*ipt, "-C", "FORWARD", "-j", FIREWALL_CHAIN, check=False).returncode != 0:
        run(*ipt, "-I", "FORWARD", "1", "-j", FIREWALL_CHAIN)


def _mounts_under(prefixes: tuple[Path, ...]) -> list[str]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].encode().decode("unicode_escape")
        if any(target == str(p) or target.startswith(f"{p}/") for p in prefixes):
            out.append(target)
    return out


def _unmount_all(prefixes: tuple[Path, ...]) -> None:
    for _ in range(5):
        mounts = _mounts_under(prefixes)
        if not mounts:
            return
        for target in sorted(mounts, key=len, reverse=True):
            run("umount", "-l", target, check=False)


def _pids_of_exe(exe: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(d / "exe") == str(exe):
                    pids.append(int(d.name))
    return pids


def _kill_cgroup_tree(path: Path) -> None:
    """SIGKILL every task in a cgroup v1 subtree, then remove its folders bottom-up."""
    if not path.is_dir():
        return
    below = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                   reverse=True)
    dirs = [*below, path]
    for d in dirs:
        with contextlib.suppress(OSError):
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)


BUILTIN_CHAINS = ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING")


def _remove_chains(ours: Callable[[str], bool]) -> None:
    """Delete every iptables/ip6tables chain `ours` names and the rules jumping to it: kubelet
    makes KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, which `kube-proxy --cleanup`
    leaves, and this module its firewall chain."""
    for cmd in ("iptables", "ip6tables"):
        if shutil.which(cmd) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            saved = run(f"{cmd}-save", "-t", table, check=False).stdout.splitlines()
            chains = [line[1:].split()[0] for line in saved if line.startswith(":")]
            mine = [c for c in chains if ours(c)]
            if not mine:
                continue
            for line in saved:
                if line.startswith("-A "):
                    words = shlex.split(line)
                    target = words[words.index("-j") + 1] if "-j" in words else ""
                    if words[1] in BUILTIN_CHAINS and ours(target):
                        run(cmd, "-w", "-t", table, "-D", *words[1:], check=False)
            for chain in mine:
                run(cmd, "-w", "-t", table, "-F", chain, check=False)
            for chain in mine:
                run(cmd, "-w", "-t", table, "-X", chain, check=False)


def teardown(saved_sysctls: dict[str, str] | None = None) -> list[str]:
    """Remove everything a real node made on this machine; returns what it could not undo."""
    problems: list[str] = []
    tools = paths.tools_dir()
    # Containers first: runc knows them even when containerd is gone.
    runc = shutil.which("runc") or "/usr/sbin/runc"
    if RUNC_ROOT.is_dir():
        listed = run(runc, "--root", str(RUNC_ROOT), "list", "-q", check=False).stdout.split()
        for cid in listed:
            run(runc, "--root", str(RUNC_ROOT), "delete", "--force", cid, check=False)
    for name in ("containerd-shim-runc-v2", "containerd", "kubelet", "kube-proxy", "coredns"):
        for pid in _pids_of_exe(tools / name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        _kill_cgroup_tree(hierarchy / "kubepods")
    # Network namespaces containerd made for pod sandboxes (bind mounts in /run/netns).
    netns = Path("/run/netns")
    if netns.is_dir():
        for ns in netns.glob(f"{CNI_NETNS_PREFIX}*"):
            run("umount", "-l", str(ns), check=False)
            with contextlib.suppress(OSError):
                ns.unlink()
    _unmount_all((STATE_ROOT, RUN_ROOT, *FIXED_PATHS))
    # kube-proxy's chains, then ours, then the bridge (its veths went with the namespaces).
    kube_proxy = tools / "kube-proxy"
    if kube_proxy.is_file():
        run(str(kube_proxy), "--cleanup", check=False)
    _remove_chains(lambda chain: chain.startswith("KUBE-") or chain == FIREWALL_CHAIN)
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        run("ip", "link", "del", BRIDGE, check=False)
    for folder in (STATE_ROOT, RUN_ROOT, *FIXED_PATHS):
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            problems.append(f"could not remove {folder}")
    saved = saved_sysctls
    if saved is None and SYSCTL_SAVE.is_file():
        saved = json.loads(SYSCTL_SAVE.read_text())
    for name, value in (saved or {}).items():
        try:
            write_sysctl(name, value)
        except OSError as e:
            problems.append(f"could not restore {name}={value}: {e}")
    with contextlib.suppress(FileNotFoundError):
        SYSCTL_SAVE.unlink()
    for target in _mounts_under((STATE_ROOT, RUN_ROOT, *FIXED_PATHS)):
        problems.append(f"still mounted: {target}")
    return problems


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------


@dataclass
class RealNode:
    """The node's processes; DevCluster starts it (see DevCluster.real_node). `pki` holds the
    cluster CA, which signs the node's certificates."""

    pki: Path
    log_dir: Path
    images: tuple[Path, ...] = ()  # OCI archives to import (besides the pause image)
    timing: dict[str, float] = field(default_factory=dict)
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    _lock_fd: int | None = None

    @property
    def containerd_socket(self) -> Path:
        return RUN_ROOT / "containerd.sock"

    @property
    def ctr(self) -> list[str]:
        """`ctr` on this node's containerd, in the namespace the kubelet's CRI uses."""
        return [str(paths.tool("ctr")), "--address", str(self.containerd_socket),
                "--namespace", "k8s.io"]

    def import_image(self, archive: Path) -> None:
        """Load an OCI archive into containerd (pods run it with imagePullPolicy Never or
        IfNotPresent; there is no registry)."""
        run(*self.ctr, "images", "import", str(archive))

    def acquire(self) -> None:
        """Take the machine's node lock, clean up after a killed predecessor, save sysctls."""
        if os.geteuid() != 0:
            raise RealNodeError("a real node needs root (containerd, runc, CNI, kubelet)")
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RealNodeError(
                f"another real node runs on this machine (pid {holder or '?'}, lock {LOCK_FILE}); "
                "there can be one per machine (fixed host paths): stop it first") from None
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        leftovers = teardown()  # a predecessor killed before its own teardown
        if leftovers:
            raise RealNodeError("remains of an earlier real node: " + "; ".join(leftovers))
        self.saved_sysctls = read_sysctls()
        SYSCTL_SAVE.write_text(json.dumps(self.saved_sysctls))
        setup_network()

    def start(self, cluster: DevCluster, deadline: float) -> None:
        """containerd (+ the images), kubelet until the node is Ready, kube-proxy, CoreDNS."""
        t0 = time.monotonic()
        pki, server = self.pki, cluster.server
        _signed_cert(pki, "kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}",
                     "keyUsage = critical, digitalSignature, keyEncipherment\n"
                     "extendedKeyUsage = clientAuth")
        _signed_cert(pki, "kubelet", f"/CN={NODE_NAME}",
                     "keyUsage = critical, digitalSignature, keyEncipherment\n"
                     "extendedKeyUsage = serverAuth\n"
                     f"subjectAltName = IP:{GATEWAY},DNS:{NODE_NAME}")
        _signed_cert(pki, "kube-proxy", "/CN=system:kube-proxy",
                     "keyUsage = critical, digitalSignature, keyEncipherment\n"
                     "extendedKeyUsage = clientAuth")
        conf = RUN_ROOT / "conf"
        for d in (conf / "cni", STATE_ROOT / "host-local", STATE_ROOT / "containerd"):
            d.mkdir(parents=True, exist_ok=True)
        write_kubeconfig(conf / "kubelet.kubeconfig", server, pki, user="kubelet-client")
        write_kubeconfig(conf / "kube-proxy.kubeconfig", server, pki, user="kube-proxy")
        # CoreDNS reads Services, EndpointSlices and Namespaces; the admin identity for now.
        write_kubeconfig(conf / "coredns.kubeconfig", server, pki)
        (conf / "cni" / "10-jupyternetes.conflist").write_text(
            json.dumps(cni_conflist(STATE_ROOT / "host-local"), indent=2))
        sandbox_image = (paths.tools_dir() / "pause.image").read_text().strip()
        (conf / "containerd.toml").write_text(containerd_config(
            STATE_ROOT / "containerd", RUN_ROOT / "containerd", self.containerd_socket,
            conf / "cni", sandbox_image))
        (conf / "kubelet.yaml").write_text(json.dumps(kubelet_config(pki, self.containerd_socket)))
        (conf / "kube-proxy.yaml").write_text(
            json.dumps(kube_proxy_config(conf / "kube-proxy.kubeconfig")))
        health_port, ready_port = free_port(), free_port()
        (conf / "Corefile").write_text(corefile(conf / "coredns.kubeconfig", health_port,
                                                ready_port))
        # containerd finds its shim on PATH, the shim finds runc there.
        env = dict(os.environ, PATH=f"{paths.tools_dir()}:/usr/local/sbin:/usr/local/bin:"
                                    "/usr/sbin:/usr/bin:/sbin:/bin")
        ctr = self.ctr

        containerd = cluster._component("containerd", [
            str(paths.tool("containerd")), "--config", str(conf / "containerd.toml")])
        containerd.env = env
        containerd.start()
        cluster._wait("containerd", lambda: run(*ctr, "version", check=False).returncode == 0,
                      deadline, containerd)
        for archive in (paths.tools_dir() / "pause.oci.tar", *self.images):
            self.import_image(archive)
        self.timing["containerd"] = time.monotonic() - t0

        kubelet = cluster._component("kubelet", [
            str(paths.tool("kubelet")), f"--config={conf / 'kubelet.yaml'}",
            f"--kubeconfig={conf / 'kubelet.kubeconfig'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={GATEWAY}", "--v=1"])
        kubelet.env = env
        kubelet.start()
        ctx = _ssl_context(pki)
        cluster._wait(f"node {NODE_NAME} Ready (kubelet)",
                      lambda: cluster._node_ready(ctx, NODE_NAME), deadline, kubelet)
        self.timing["kubelet"] = time.monotonic() - t0

        proxy = cluster._component("kube-proxy", [
            str(paths.tool("kube-proxy")), f"--config={conf / 'kube-proxy.yaml'}", "--v=1"])
        proxy.env = env
        dns = cluster._component("coredns", [
            str(paths.tool("coredns")), "-conf", str(conf / "Corefile")])
        proxy.start()
        dns.start()
        cluster._wait("kube-proxy /healthz", lambda: _http_ok("http://127.0.0.1:10256/healthz"),
                      deadline, proxy)
        cluster._wait("CoreDNS /ready", lambda: _http_ok(f"http://127.0.0.1:{ready_port}/ready"),
                      deadline, dns)
        self.timing["dns"] = time.monotonic() - t0

    def release(self) -> list[str]:
        problems = teardown(self.saved_sysctls)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return problems


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               on_fail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RealNodeError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_fail()}")
