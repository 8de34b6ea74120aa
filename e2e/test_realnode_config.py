"""The real nodes' configuration, checked without starting anything (no root, no cluster).

What must hold for traffic to stay on this machine and for two nodes to share it.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bed"))

import hostnet  # noqa: E402
import realnodes  # noqa: E402

STATE = Path("/tmp/bed-under-test")
NODES = realnodes.REAL_NODES
BRIDGES = [n.bridge for n in NODES]


def test_two_nodes_one_spot_one_on_demand_on_disjoint_subnets():
    assert len(NODES) >= 2
    assert {n.labels()["karpenter.sh/capacity-type"] for n in NODES} == {"spot", "on-demand"}
    subnets = [ipaddress.ip_network(b.subnet) for b in BRIDGES]
    pods = ipaddress.ip_network(hostnet.POD_CIDR)
    assert all(s.subnet_of(pods) for s in subnets)
    assert len({str(s) for s in subnets}) == len(subnets)
    assert not ipaddress.ip_network(hostnet.SERVICE_CIDR).overlaps(pods)
    assert not ipaddress.ip_network(hostnet.SERVICE_CIDR).is_loopback


def test_routes_keep_both_ranges_local_with_unreachable_fallbacks():
    routes = [c for c in hostnet.plan_up(BRIDGES) if c[:3] == ["ip", "route", "replace"]]
    assert ["ip", "route", "replace", hostnet.SERVICE_CIDR, "dev", BRIDGES[0].name, "src", BRIDGES[0].gateway] in routes
    fallbacks = {c[4] for c in routes if c[3] == "unreachable"}
    assert fallbacks == {hostnet.SERVICE_CIDR, hostnet.POD_CIDR}
    assert not any("via" in c or "default" in c for c in routes)


def test_down_removes_everything_up_adds():
    up, down = hostnet.plan_up(BRIDGES), hostnet.plan_down(BRIDGES)
    added_links = {c[3] for c in up if c[:3] == ["ip", "link", "add"]}
    removed_links = {c[3] for c in down if c[:3] == ["ip", "link", "del"]}
    assert added_links == removed_links == {b.name for b in BRIDGES}
    added_routes = {tuple(c[3:]) for c in up if c[:3] == ["ip", "route", "replace"]}
    removed_routes = {tuple(c[3:]) for c in down if c[:3] == ["ip", "route", "del"]}
    assert {r[:4] if r[0] == "unreachable" else r[:1] for r in added_routes} == {
        r[:4] if r[0] == "unreachable" else r[:1] for r in removed_routes
    }
    assert ["iptables", "-w", "-X", hostnet.GUARD_CHAIN] in down
    assert ["iptables", "-w", "-D", "FORWARD", "-j", hostnet.GUARD_CHAIN] in down


def test_forward_guard_passes_bridge_to_bridge_and_drops_the_rest():
    rules = [c[4:] for c in hostnet.plan_up(BRIDGES) if c[:4] == ["iptables", "-w", "-A", hostnet.GUARD_CHAIN]]
    pattern = f"{hostnet.BRIDGE_PREFIX}+"
    assert rules == [
        ["-i", pattern, "-o", pattern, "-j", "ACCEPT"],
        ["-i", pattern, "-j", "DROP"],
        ["-o", pattern, "-j", "DROP"],
    ]


def test_pods_get_no_default_route_and_no_masquerade():
    for node in NODES:
        bridge = realnodes.cni_config(STATE, node)["plugins"][0]
        assert bridge["ipMasq"] is False and bridge["isDefaultGateway"] is False
        assert bridge["ipam"]["routes"] == [{"dst": hostnet.POD_CIDR}, {"dst": hostnet.SERVICE_CIDR}]
        assert bridge["bridge"] == node.bridge.name


def test_dns_is_coredns_only_and_forwards_nothing():
    corefile = realnodes.corefile(STATE)
    assert "forward" not in corefile and "proxy" not in corefile
    assert f"bind {' '.join(n.ip for n in NODES)}" in corefile
    for node in NODES:
        cfg = realnodes.kubelet_config(STATE, node, STATE / "pki")
        assert cfg["resolvConf"] == "" and cfg["clusterDNS"] == [node.ip]


def test_nodes_share_nothing_they_would_fight_over():
    kubelets = [realnodes.kubelet_config(STATE, n, STATE / "pki") for n in NODES]
    for key in ("cgroupRoot", "address", "podCIDR", "podLogsDir", "containerRuntimeEndpoint"):
        assert len({k[key] for k in kubelets}) == len(NODES), key
    configs = [realnodes.containerd_config(STATE, n, "pause:x") for n in NODES]
    for cfg in configs:
        assert "restrict_oom_score_adj = true" in cfg
        assert "SystemdCgroup = false" in cfg
    assert len({realnodes.containerd_socket(STATE, n) for n in NODES}) == len(NODES)


def test_containerd_cannot_pull_from_a_registry():
    procs = realnodes.argvs(STATE) if realnodes.node_binaries()["pause"].exists() else {}
    for name, (_, env) in procs.items():
        if name.startswith("containerd-"):
            assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:") and env["NO_PROXY"] == ""
    assert realnodes.DEAD_PROXY.startswith("http://127.0.0.1:")


def test_a_node_is_sent_only_the_layers_above_what_it_has_unpacked():
    import nodeimages

    base, torch, code = ("sha256:" + c * 64 for c in "abc")
    chains = nodeimages.chain_ids([base, torch, code])
    # The OCI image spec's chain ID: the first layer's diff ID, then sha256("<parent chain> <diff ID>").
    assert chains[0] == base
    assert chains[1] == "sha256:" + __import__("hashlib").sha256(f"{base} {torch}".encode()).hexdigest()
    assert nodeimages.skipped_layers([base, torch, code], set(chains[:2])) == {base, torch}
    assert nodeimages.skipped_layers([base, torch, code], set()) == set()
    # A snapshot above a missing one cannot be reused: containerd names it by the whole chain.
    assert nodeimages.skipped_layers([base, torch, code], {chains[1], chains[2]}) == set()


def test_an_import_keeps_the_top_skipped_snapshot_which_holds_those_below():
    import nodeimages

    base, torch, code = ("sha256:" + c * 64 for c in "abc")
    chains = nodeimages.chain_ids([base, torch, code])
    assert nodeimages.top_skipped_chain([base, torch, code], {base, torch}) == chains[1]
    assert nodeimages.top_skipped_chain([base, torch, code], {base}) == chains[0]
    assert nodeimages.top_skipped_chain([base, torch, code], set()) is None


def test_a_kept_container_log_reads_as_the_container_printed_it(tmp_path):
    from bedkit import PodLogKeeper, kept_pod_log

    logs = tmp_path / "nodes" / "gpu-spot-1" / "pod-logs" / "ns_engine-0_uid1" / "engine"
    logs.mkdir(parents=True)
    (logs / "0.log").write_text(
        "2026-01-01T00:00:00.000000000Z stdout F {\"msg\": \"ready\"}\n"
        "2026-01-01T00:00:01.000000000Z stderr P drain \n"
        "2026-01-01T00:00:01.000000001Z stderr F requested\n"
    )
    PodLogKeeper(tmp_path).scan()
    (logs / "0.log").unlink()  # the kubelet removes a deleted pod's logs: the kept link stays
    assert kept_pod_log(tmp_path, "ns", "engine-0") == '{"msg": "ready"}\ndrain requested\n'
    assert kept_pod_log(tmp_path, "ns", "other") == ""


def test_imports_are_batched_to_what_the_disk_holds_and_refused_past_the_margin():
    import nodeimages
    import pytest

    gib = 1 << 30
    assert nodeimages.import_batch([12 * gib] * 3, free=33 * gib, margin=4 * gib) == 2
    assert nodeimages.import_batch([12 * gib], free=17 * gib, margin=4 * gib) == 1
    assert nodeimages.import_batch([gib // 100] * 3, free=5 * gib, margin=4 * gib) == 3  # a code change
    with pytest.raises(RuntimeError, match="needs 12.0 GiB .* 10.0 GiB are free and 4 GiB must stay free"):
        nodeimages.import_batch([12 * gib], free=10 * gib, margin=4 * gib)


def test_kwok_nodes_sit_on_a_bed_bridge_of_their_own_inside_the_guarded_pod_range():
    import kwoknodes

    pods = ipaddress.ip_network(hostnet.POD_CIDR)
    bridge = ipaddress.ip_network(kwoknodes.BRIDGE.subnet)
    assert bridge.subnet_of(pods) and kwoknodes.BRIDGE.name.startswith(hostnet.BRIDGE_PREFIX)  # guard chain, fallback
    assert not any(bridge.overlaps(ipaddress.ip_network(b.subnet)) for b in BRIDGES)
    ips = [kwoknodes.node_ip(k) for k in range(1, kwoknodes.MAX_NODES + 1)]
    assert len(set(ips)) == len(ips) and all(ipaddress.ip_address(ip) in bridge for ip in ips)
    assert kwoknodes.BRIDGE.gateway not in ips
    # Each address is the machine's own (a /32 on the bridge), so a scrape of a kwok pod stays here.
    assert kwoknodes.plan_addresses(2) == [["ip", "addr", "replace", f"{ips[0]}/32", "dev", kwoknodes.BRIDGE.name],
                                           ["ip", "addr", "replace", f"{ips[1]}/32", "dev", kwoknodes.BRIDGE.name]]
    with pytest.raises(ValueError, match="1..200"):
        kwoknodes.node_ip(kwoknodes.MAX_NODES + 1)


def test_only_pods_that_ask_for_kwok_nodes_land_there():
    import kwoknodes

    nodes = kwoknodes.node_objects(3)
    assert [n["metadata"]["name"] for n in nodes] == ["kwok-gpu-1", "kwok-gpu-2", "kwok-gpu-3"]
    want = kwoknodes.placement()
    for n in nodes:
        (taint,) = n["spec"]["taints"]
        assert taint["effect"] == "NoSchedule"
        assert any(t["key"] == taint["key"] and t["value"] == taint["value"] for t in want["tolerations"])
        assert all(n["metadata"]["labels"][k] == v for k, v in want["nodeSelector"].items())
        assert n["metadata"]["annotations"][kwoknodes.KWOK_ANNOTATION[0]] == kwoknodes.KWOK_ANNOTATION[1]
    # kwok's stand-in servers listen where the pods' IPs point: each node's address.
    argvs = kwoknodes.argvs(STATE, 3, 12345)
    assert {env["LLMFLEET_ENGINE_HOST"] for name, (_, env) in argvs.items() if name != "kwok"} == {
        n["status"]["addresses"][0]["address"] for n in nodes}
    assert f"--node-ip={kwoknodes.BRIDGE.gateway}" in argvs["kwok"][0]
