"""The real node's iptables clean-up, run by the real iptables inside a throwaway network namespace
(``unshare --net``: its own, empty netfilter tables), so the host's rules are never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from modelyard_sandbox.hostnet import chains_to_remove, removal_script
from modelyard_sandbox.nodeconfig import BRIDGE_MAC, CNI_NETWORK

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-restore") is None or shutil.which("unshare") is None,
    reason="needs root, iptables (hack/sandbox/node-deps.sh) and unshare",
)


def _portmap_jump(network: str, container: str, port: int, chain: str) -> str:
    """The rule portmap adds to CNI-HOSTPORT-DNAT for one pod (its comment names network and container)."""
    comment = f'"dnat name: \\"{network}\\" id: \\"{container}\\""'
    return (
        f"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment {comment} -m multiport --dports {port} "
        f"-j CNI-DN-{chain}"
    )


#: What the node's components leave in the nat and filter tables (shapes taken from their own rules), and
#: rules of someone else that must survive.
SETUP = f"""*filter
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-POD-FW-ABCDEF - [0:0]
:OTHER-TOOL - [0:0]
-A FORWARD -m comment --comment "kube-router netpol" -j KUBE-ROUTER-FORWARD
-A FORWARD -j OTHER-TOOL
-A KUBE-ROUTER-FORWARD -d 10.245.0.5/32 -j KUBE-POD-FW-ABCDEF
-A OTHER-TOOL -s 192.0.2.0/24 -j ACCEPT
COMMIT
*nat
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-0123456789abcdef - [0:0]
:CNI-DN-fedcba9876543210 - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
{_portmap_jump(CNI_NETWORK, "abc", 8080, "0123456789abcdef")}
{_portmap_jump("podman", "def", 9090, "fedcba9876543210")}
-A CNI-DN-0123456789abcdef -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.245.0.5:8080
-A CNI-DN-fedcba9876543210 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.88.0.5:9090
COMMIT
"""

CLEAN = textwrap.dedent(
    """
    import subprocess, sys
    from modelyard_sandbox.hostnet import chains_to_remove, removal_script
    subprocess.run(["iptables-restore"], input=sys.argv[1], text=True, check=True)
    for table in ("filter", "nat"):
        save = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
        script = removal_script(table, save, chains_to_remove(save))
        subprocess.run(["iptables-restore", "--noflush"], input=script, text=True, check=True)
    print(subprocess.run(["iptables-save"], capture_output=True, text=True).stdout)
    """
)


def test_chains_of_the_node_and_their_jumps_go_others_stay() -> None:
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", CLEAN, SETUP],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    after = result.stdout
    assert "KUBE-" not in after
    assert "CNI-DN-0123456789abcdef" not in after
    assert "-A OTHER-TOOL -s 192.0.2.0/24 -j ACCEPT" in after
    assert "-A FORWARD -j OTHER-TOOL" in after
    assert "CNI-DN-fedcba9876543210" in after  # another CNI network's port mapping
    assert "podman" in after


def test_portmaps_shared_chains_go_only_when_no_other_network_maps_ports() -> None:
    nat = "*nat\n" + SETUP.split("*nat\n")[1]
    alone = "\n".join(line for line in nat.splitlines() if "fedcba9876543210" not in line)

    assert chains_to_remove(nat) == {"CNI-DN-0123456789abcdef"}
    assert chains_to_remove(alone) == {"CNI-DN-0123456789abcdef", "CNI-HOSTPORT-DNAT"}
    script = removal_script("nat", alone, chains_to_remove(alone))
    assert "-D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in script
    assert script.rstrip().endswith("-X CNI-HOSTPORT-DNAT\nCOMMIT")


#: A throwaway network namespace with its own /sys (mounted in its own mount namespace), where
#: /sys/class/net lists the namespace's links.
OWN_SYSFS = ["unshare", "--net", "--mount", "sh", "-c", 'mount -t sysfs sysfs /sys && exec "$@"', "-"]

#: Bridges in a throwaway network namespace: ``pinned`` made by ensure_bridge, ``plain`` as ``ip link add``
#: makes one; ports with ever lower MACs join each, then the lowest leaves. Prints each bridge's address after
#: every step.
BRIDGE_ADDRESSES = textwrap.dedent(
    """
    import json, subprocess, sys
    from modelyard_sandbox.hostnet import ensure_bridge
    def ip(*args): subprocess.run(["ip", *args], check=True)
    def address(name): return open(f"/sys/class/net/{name}/address").read().strip()
    ensure_bridge("pinned", sys.argv[1])
    ip("link", "add", "plain", "type", "bridge")
    seen = {"pinned": [], "plain": []}
    for bridge in seen:
        for i, mac in enumerate(("02:00:00:00:00:09", "00:00:5e:00:53:01", "00:00:00:00:00:01")):
            port = f"{bridge[:2]}{i}"
            ip("link", "add", port, "address", mac, "type", "veth", "peer", "name", f"{port}p")
            ip("link", "set", port, "master", bridge)
            ip("link", "set", port, "up")
            seen[bridge].append(address(bridge))
        ip("link", "del", f"{bridge[:2]}2")
        seen[bridge].append(address(bridge))
    print(json.dumps(seen))
    """
)


def test_the_pods_bridge_keeps_its_own_mac_address_whichever_pods_join_or_leave() -> None:
    """A pod's veth with a lower MAC than the bridge's must not move it: pods would keep the old one for
    their gateway, and the kubelet's probes of them time out (nodeconfig.BRIDGE_MAC)."""
    result = subprocess.run(
        [*OWN_SYSFS, sys.executable, "-c", BRIDGE_ADDRESSES, BRIDGE_MAC],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["pinned"] == [BRIDGE_MAC] * 4
    # what the kernel does to a bridge whose address was never set: it follows its lowest port
    lowest = ["02:00:00:00:00:09", "00:00:5e:00:53:01", "00:00:00:00:00:01", "00:00:5e:00:53:01"]
    assert seen["plain"] == lowest
