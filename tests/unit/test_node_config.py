"""The real node's configuration documents (harness.node): its network stays on RFC 2544's test
range with nothing routed off the machine, and its daemons listen on the bridge or loopback."""

from __future__ import annotations

import ipaddress

from harness import node
from harness.cluster import SERVICE_CIDR

TEST_NET = ipaddress.ip_network("198.18.0.0/15")


def test_pods_and_services_share_no_address():
    assert ipaddress.ip_network(node.POD_SUBNET).subnet_of(TEST_NET)
    assert not ipaddress.ip_network(node.POD_SUBNET).overlaps(ipaddress.ip_network(SERVICE_CIDR))
    assert ipaddress.ip_address(node.GATEWAY) in ipaddress.ip_network(node.POD_SUBNET)
    assert str(TEST_NET) == node.TEST_NET


def test_the_pod_network_routes_nothing_off_the_machine(tmp_path):
    bridge = node.cni_conflist(tmp_path)["plugins"][0]  # type: ignore[index]
    assert bridge["type"] == "bridge"
    assert bridge["isGateway"] is False and bridge["isDefaultGateway"] is False
    assert bridge["ipMasq"] is False
    routes = bridge["ipam"]["routes"]
    assert routes == [{"dst": str(TEST_NET), "gw": node.GATEWAY}]  # no default route
    assert node.firewall_rules() == [
        ["-i", node.BRIDGE, "!", "-o", node.BRIDGE, "-j", "DROP"],
        ["!", "-i", node.BRIDGE, "-o", node.BRIDGE, "-j", "DROP"]]


def test_node_daemons_listen_on_the_bridge_or_loopback_only(tmp_path):
    kubelet = node.kubelet_config(tmp_path, tmp_path / "sock")
    assert kubelet["address"] == node.GATEWAY and kubelet["healthzBindAddress"] == "127.0.0.1"
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["failCgroupV1"] is False and kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["clusterDNS"] == [node.GATEWAY] and kubelet["resolvConf"] == ""
    proxy = node.kube_proxy_config(tmp_path / "kubeconfig")
    assert proxy["nodePortAddresses"] == [f"{node.GATEWAY}/32"]
    assert proxy["iptables"] == {"localhostNodePorts": False}
    assert str(proxy["healthzBindAddress"]).startswith("127.0.0.1:")
    assert str(proxy["metricsBindAddress"]).startswith("127.0.0.1:")
    corefile = node.corefile(tmp_path / "kubeconfig", 1001, 1002)
    assert f"bind {node.GATEWAY}" in corefile
    assert "health 127.0.0.1:1001" in corefile and "ready 127.0.0.1:1002" in corefile
    assert "forward" not in corefile  # no upstream: nothing leaves the machine
