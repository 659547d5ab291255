"""Privileged tier: namespaces, shaped links, netem refusal, spawn, and cleanup of the local backend."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from testbed.emulation.cleanup import clean, find
from testbed.emulation.config import ClusterSpec
from testbed.emulation.fidelity import FULL
from testbed.emulation.local import topology
from testbed.emulation.local.backend import LocalBackend, NamespacedCluster
from testbed.emulation.netem import NetemUnavailable, netem_available
from testbed.emulation.probe import probe_all, probe_link, probe_rtt
from testbed.emulation.tc import class_rates

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tc)"),
]

TOLERANCE = 0.05


def _spec(links: list[dict[str, object]], devices: tuple[str, ...] = ("a", "b")) -> ClusterSpec:
    return ClusterSpec.model_validate(
        {"devices": [{"name": n, "profile": "cloud"} for n in devices], "links": links}
    )


def _run_id(name: str) -> str:
    return f"test-{name}-{os.getpid()}"


@pytest.fixture
def pair() -> Iterator[NamespacedCluster]:
    run_id = _run_id("links")
    with LocalBackend(run_id).up(_spec([{"device": "a", "rate": "10mbit"}])) as handle:
        assert isinstance(handle, NamespacedCluster)
        yield handle
    assert not find(run_id), "the cluster left labelled resources behind"


def test_shaped_link_at_10_then_100_mbit(pair: NamespacedCluster) -> None:
    assert pair.fidelity.level == FULL
    slow = probe_link(pair, "a", "b", seconds=1.0)
    assert slow.within(TOLERANCE), slow.describe()
    pair.update_link("a", rate="100mbit")
    assert class_rates_of(pair, "a") == {1: 10**8, 0x2: 10**8, 0x10: 10**8}  # caps (ceil)
    fast = probe_link(pair, "b", "a", seconds=1.0)  # a's download: the hub side of its veth
    assert fast.within(TOLERANCE), fast.describe()
    assert len(pair.fidelity.probes) == 2


def class_rates_of(handle: NamespacedCluster, device: str) -> dict[int, int]:
    from pyroute2 import IPRoute

    with IPRoute(netns=handle.netns(device)) as ipr:
        (index,) = ipr.link_lookup(ifname="eth0")
        return class_rates(ipr, index)


def test_pair_link_shapes_only_traffic_to_that_peer() -> None:
    spec = _spec(
        [{"device": "a", "rate": "100mbit"}, {"pair": ["a", "b"], "rate": "20mbit"}],
        devices=("a", "b", "c"),
    )
    with LocalBackend(_run_id("pair")).up(spec) as handle:
        to_c, to_b = probe_all(handle, seconds=1.0)  # a's own link (via c), then the pair
    assert (to_b.dst, to_c.dst) == ("b", "c")
    assert to_b.configured_bps == 20 * 10**6 and to_b.within(TOLERANCE), to_b.describe()
    assert to_c.configured_bps == 10**8 and to_c.within(TOLERANCE), to_c.describe()


def test_delay_is_refused_without_netem_or_applied_with_it() -> None:
    run_id = _run_id("netem")
    spec = _spec([{"device": "a", "rate": "100mbit", "delay": "20ms"}])
    if not netem_available():
        with pytest.raises(NetemUnavailable, match=r"device 'a' asks for delay '20ms'.*no netem"):
            LocalBackend(run_id).start(spec)
    else:
        with LocalBackend(run_id).up(spec) as handle:
            rtt = probe_rtt(handle, "b", "a")
        assert 0.038 <= rtt <= 0.080, f"RTT {rtt * 1e3:.1f} ms; expected 2 x 20 ms (+ a little)"
    assert not find(run_id)


def test_netem_leaf_options_reach_the_kernel() -> None:
    """pyroute2 must encode our netem options; only the kernel may say it lacks netem."""
    import errno

    from pyroute2 import IPRoute, netns
    from pyroute2.netlink.exceptions import NetlinkError

    from testbed.emulation.config import LinkSettings
    from testbed.emulation.shaping import egress_plan
    from testbed.emulation.tc import apply_plan

    name = f"tb-{os.getpid() % 0xFFFFFF:06x}-test-netem-leaf"
    plan = egress_plan(LinkSettings(rate="10mbit", delay="20ms", jitter="5ms", loss="1%"), [])
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="p0", kind="veth", peer="p1")
            (index,) = ipr.link_lookup(ifname="p0")
            if netem_available():
                apply_plan(ipr, index, plan, None)
                kinds = {q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index=index)}
                assert {"htb", "netem"} <= kinds
            else:
                with pytest.raises(NetlinkError) as info:
                    apply_plan(ipr, index, plan, None)
                assert info.value.code == errno.ENOENT  # "no such qdisc kind", from the kernel
    finally:
        netns.remove(name)


def test_leaf_queues_are_bounded_for_the_rate_and_follow_a_rate_change() -> None:
    """Every leaf class gets a FIFO of queue_packets(rate) frames (the kernel default is
    txqueuelen: 1.2 s at 10 Mbit); an in-place rate change resizes it."""
    from pyroute2 import IPRoute, netns

    from testbed.emulation.config import LinkSettings
    from testbed.emulation.shaping import egress_plan, queue_packets
    from testbed.emulation.tc import apply_plan

    def leaf_limits(ipr: IPRoute, index: int) -> dict[int, int]:
        return {
            q["parent"] & 0xFFFF: q.get_attr("TCA_OPTIONS")["limit"]
            for q in ipr.get_qdiscs(index=index)
            if q.get_attr("TCA_KIND") == "pfifo"
        }

    name = f"tb-{os.getpid() % 0xFFFFFF:06x}-test-leaf-queue"
    pair = [("10.213.0.2", LinkSettings(rate="5mbit"))]
    slow, fast = egress_plan(LinkSettings(rate="10mbit"), pair), egress_plan(
        LinkSettings(rate="1gbit"), pair
    )
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="p0", kind="veth", peer="p1")
            (index,) = ipr.link_lookup(ifname="p0")
            apply_plan(ipr, index, slow, None)
            # root class 1:1 is inner; 1:2 takes small packets, 1:10 the rest, 1:100 the pair
            assert leaf_limits(ipr, index) == {0x2: 32, 0x10: 32, 0x100: 32}
            apply_plan(ipr, index, fast, slow)
            big = queue_packets(10**9)
            assert leaf_limits(ipr, index) == {0x2: big, 0x10: big, 0x100: 32}
    finally:
        netns.remove(name)


def test_spawned_process_lives_in_its_namespace_and_cgroup() -> None:
    script = textwrap.dedent("""
        import os, socket
        s = socket.socket(); s.bind((os.environ["TESTBED_ADDRESS"], 0))
        print(open("/proc/self/cgroup").read().count(os.environ["TESTBED_DEVICE"]))
        print(socket.if_nameindex())
    """)
    with LocalBackend(_run_id("spawn")).up(_spec([])) as handle:
        proc = handle.spawn("b", [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        in_cgroups, interfaces = out.splitlines()
        assert int(in_cgroups) >= 2  # cpu and memory hierarchies (one line on cgroup v2)
        assert "'eth0'" in interfaces and "'lo'" in interfaces and "tb" not in interfaces
        assert handle.address("b") != handle.address("a")
        handle.down()
        handle.down()  # idempotent
        assert not handle.is_up


def test_host_link_reaches_a_device() -> None:
    with LocalBackend(_run_id("host")).up(_spec([]), host_link=True) as handle:
        assert isinstance(handle, NamespacedCluster) and handle.host_address
        agent = [sys.executable, "-I", "-c", ECHO_ONCE, handle.address("a")]
        server = handle.spawn("a", agent, stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline()) if server.stdout else 0
        with socket.create_connection((handle.address("a"), port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        server.wait(timeout=10)
    assert not find(_run_id("host"))


def _host_receive_rate(handle: NamespacedCluster, device: str, nbytes: int) -> float:
    """bit/s at which the host receives nbytes sent by a process in `device`."""
    import threading
    import time

    server = socket.create_server((handle.host_address, 0))
    got: dict[str, float] = {}

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            first, n = conn.recv(65536), 0
            t0, n = time.perf_counter(), len(first)
            while chunk := conn.recv(1 << 20):
                n += len(chunk)
            got.update(rate=8 * (n - len(first)) / (time.perf_counter() - t0), n=n)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    sender = [sys.executable, "-I", "-c", SEND, handle.host_address, str(server.getsockname()[1]),
              str(nbytes)]
    handle.spawn(device, sender).wait(timeout=120)
    receiver.join(timeout=60)
    server.close()
    assert got["n"] == nbytes
    return got["rate"]


def test_traffic_to_the_host_observer_can_bypass_the_link() -> None:
    """The parameter server on the host only observes: leave_unshaped lets the weights pushed
    to it bypass the device's 10 Mbit link, and device-to-device traffic stays shaped."""
    run_id = _run_id("observer")
    with LocalBackend(run_id).up(_spec([{"device": "a", "rate": "10mbit"}]),
                                 host_link=True) as handle:
        assert isinstance(handle, NamespacedCluster) and handle.host_address
        shaped = _host_receive_rate(handle, "a", 1_500_000)
        assert shaped < 1.1e7, shaped
        handle.leave_unshaped([handle.host_address])
        assert _host_receive_rate(handle, "a", 20_000_000) > 5e7  # 5x the link at least
        still = probe_link(handle, "a", "b", seconds=1.0)
        assert still.within(TOLERANCE), still.describe()
    assert not find(run_id)


SEND = textwrap.dedent("""
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60) as s:
        s.sendall(b"x" * int(sys.argv[3]))
""")

ECHO_ONCE = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1)
    print(s.getsockname()[1], flush=True)
    c, _ = s.accept(); c.sendall(c.recv(4))
""")

CRASHER = textwrap.dedent("""
    import subprocess, sys, time
    from testbed.emulation.config import ClusterSpec
    from testbed.emulation.local.backend import LocalBackend
    spec = ClusterSpec.model_validate({"devices": [{"name": "a", "cpus": 0.5}, {"name": "b"}],
                                       "links": [{"device": "a", "rate": "10mbit"}]})
    handle = LocalBackend(sys.argv[1]).start(spec, host_link=True)
    sleeper = handle.spawn("a", ["sh", "-c", "echo started; exec sleep 600"],
                           stdout=subprocess.PIPE, text=True)
    assert sleeper.stdout.readline() == "started\\n"  # in its cgroup and namespace by now
    print("up", flush=True)
    time.sleep(600)
""")


def test_clean_removes_everything_after_the_owner_is_killed() -> None:
    run_id = _run_id("crash")
    owner = subprocess.Popen(
        [sys.executable, "-c", CRASHER, run_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    left = find(run_id)
    assert len(left.netns) == 3 and len(left.links) == 1 and left.cgroups
    removed = clean(run_id)
    assert removed.pids, "the orphaned 'sleep' in the device should have been killed"
    assert sorted(removed.netns) == sorted(left.netns) and removed.links == left.links
    assert not find(run_id)
    assert clean(run_id).netns == []  # idempotent


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_inside_up_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    run_id = _run_id(f"fail-{error.__name__}")
    real_add = topology.add_device

    def add_then_fail(names, device, index, *args):  # type: ignore[no-untyped-def]
        if index == 1:  # after the hub, device a, its cgroup are made
            raise error("injected failure while adding device b")
        real_add(names, device, index, *args)

    monkeypatch.setattr(topology, "add_device", add_then_fail)
    spec = _spec([{"device": "a", "rate": "10mbit"}])
    with pytest.raises(error, match="injected failure"), LocalBackend(run_id).up(spec):
        pass
    assert not find(run_id)
    monkeypatch.undo()
    with (
        pytest.raises(KeyError, match="unknown device 'z'"),
        LocalBackend(run_id).up(_spec([])) as handle,
    ):
        handle.address("z")  # an error in the caller's block: down() still runs
    assert not find(run_id)
