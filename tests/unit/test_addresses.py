"""The address rule: the project never names a private range (10/8, 172.16/12, 192.168/16), not
even as a CIDR nothing dials; the harness's clusters use loopback and RFC 2544's test range."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from harness.cluster import POD_CIDR, SERVICE_CIDR, SERVICE_IP

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
TEST_NET = ipaddress.ip_network("198.18.0.0/15")
# A dotted quad not inside a longer one (a version like 1.2.3.4.5 is no address); a sentence's
# full stop after it still counts.
IPV4 = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?!\w|\.\d)")
SCANNED = ("jupyternetes", "harness", "tests", "benchmarks", "stacks", "tools", "examples",
           "docs", "README.md", "Makefile", "Containerfile")


def private_literals() -> list[str]:
    found = []
    for entry in SCANNED:
        base = ROOT / entry
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()
                                               and p.suffix in (".py", ".yaml", ".yml", ".sh",
                                                                ".md", ".toml", ".json", "")]
        for path in files:
            if path.name in ("go.sum", "package-lock.json") or path == Path(__file__):
                continue
            try:
                text = path.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for m in IPV4.finditer(text):
                try:
                    ip = ipaddress.ip_address(m.group(1))
                except ValueError:
                    continue
                if any(ip in net for net in PRIVATE):
                    found.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    return found


def test_no_private_range_is_named_anywhere():
    assert private_literals() == []


def test_the_cluster_ranges_are_loopback_or_the_test_range():
    assert ipaddress.ip_network(SERVICE_CIDR).subnet_of(TEST_NET)
    assert ipaddress.ip_address(SERVICE_IP) in ipaddress.ip_network(SERVICE_CIDR)
    assert ipaddress.ip_network(POD_CIDR).subnet_of(ipaddress.ip_network("127.0.0.0/8"))
