"""Fast tier for testbed.emulation: parsers, spec validation, profiles, names, shaping plans."""

from __future__ import annotations

import warnings

import pytest
from pydantic import ValidationError

from testbed.emulation.config import ClusterSpec, DeviceSpec, LinkSettings, selector_of
from testbed.emulation.fidelity import Fidelity, FidelityWarning, ProbeResult
from testbed.emulation.local.fallback import assign_cpus
from testbed.emulation.naming import RunNames, is_labelled_link, is_labelled_netns
from testbed.emulation.netem import NetemUnavailable, netem_options, require_netem
from testbed.emulation.profiles import ResourceUnavailable, get_profile
from testbed.emulation.resolve import resolve
from testbed.emulation.shaping import (
    BURST_FLOOR_BYTES,
    DEFAULT_MINOR,
    SMALL_MINOR,
    burst_bytes,
    compose,
    device_egress,
    egress_plan,
    path_rate_bps,
    queue_packets,
)
from testbed.emulation.units import parse_memory, parse_percent, parse_rate, parse_time


@pytest.mark.parametrize(
    ("text", "bits"),
    [("100mbit", 10**8), ("1gbit", 10**9), ("10mbit", 10**7), ("2.5mbit", 2_500_000),
     ("64kbit", 64_000), ("1000bit", 1000), (5_000, 5_000)],
)  # fmt: skip
def test_parse_rate(text: str | int, bits: int) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("100mbps", "ambiguous"), ("fast", "expected a positive number"), ("0mbit", "not positive"),
     ("10 furlongs", "unknown unit"), ("-1mbit", "not understood")],
)  # fmt: skip
def test_parse_rate_errors_name_value_and_form(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        parse_rate(text)
    assert repr(text) in str(info.value)


def test_parse_memory_binary_like_docker() -> None:
    assert parse_memory("1g") == 2**30
    assert parse_memory("512m") == 512 * 2**20
    assert parse_memory("1.5g") == 3 * 2**29
    assert parse_memory("64MiB") == 64 * 2**20
    with pytest.raises(ValueError, match=r"'12x'.*expected a positive size"):
        parse_memory("12x")


def test_parse_time_and_percent() -> None:
    assert parse_time("20ms") == pytest.approx(0.02)
    assert parse_time("250us") == pytest.approx(250e-6)
    assert parse_time("1s") == 1.0
    with pytest.raises(ValueError, match=r"'20'.*missing unit.*'20ms'"):
        parse_time("20")
    assert parse_percent("0.5%") == 0.5
    with pytest.raises(ValueError, match="between 0% and 100%"):
        parse_percent("150%")


def _cluster(**extra: object) -> ClusterSpec:
    base: dict[str, object] = {
        "devices": [{"name": "a"}, {"name": "b", "profile": "cloud"}, {"name": "c"}],
        "links": [{"device": "a", "rate": "10mbit"}, {"pair": ["b", "a"], "rate": "5mbit"}],
    }
    return ClusterSpec.model_validate({**base, **extra})


def test_cluster_spec_accepts_docker_and_tc_spellings() -> None:
    spec = _cluster(
        schedule=[
            {"at_s": 5, "device": "a", "rate": "1mbit"},
            {"at_s": 1, "pair": ["a", "b"], "rate": "2mbit"},
        ]
    )
    assert spec.backend == "local"
    assert [e.at_s for e in spec.timeline()] == [1, 5]
    assert spec.links[1].key == ("a", "b")
    assert spec.links[0].rate_bps == 10**7
    delayed = [{"device": "a", "delay": "10ms"}]
    jittered = _cluster(links=delayed, schedule=[{"at_s": 1, "device": "a", "jitter": "2ms"}])
    assert jittered.schedule[0].jitter == "2ms"  # the link's delay makes the jitter valid


@pytest.mark.parametrize(
    ("change", "fragment"),
    [({"devices": [{"name": "a", "cpu": 1}]}, "Extra inputs are not permitted"),
     ({"devices": [{"name": "a", "profile": "laptop"}]}, "known device profiles: cloud, desktop, edge"),
     ({"devices": [{"name": "a"}, {"name": "a"}]}, r"\['a'\] are used more than once"),
     ({"links": [{"device": "z", "rate": "1mbit"}]}, "unknown device 'z'"),
     ({"links": [{"pair": ["a", "b"], "rate": "1mbit"}, {"pair": ["b", "a"], "rate": "2mbit"}]},
      "declared twice"),
     ({"links": [{"device": "a", "pair": ["a", "b"], "rate": "1mbit"}]}, "exactly one of"),
     ({"links": [{"device": "a"}]}, "sets nothing"),
     ({"links": [{"device": "a", "jitter": "5ms"}]}, "without a delay"),
     ({"schedule": [{"at_s": 1, "device": "a", "jitter": "5ms"}]}, "'a' sets jitter '5ms' without"),
     ({"links": [{"device": "a", "rate": "1mbps"}]}, "ambiguous"),
     ({"schedule": [{"at_s": 1, "device": "c", "rate": "1mbit"}]}, "not declared under links"),
     ({"devices": [{"name": "bad name"}]}, "not usable in resource names")],
)  # fmt: skip
def test_cluster_spec_errors_are_specific(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        _cluster(**change)


def test_profiles_resolve_with_overrides() -> None:
    edge = resolve(DeviceSpec(name="e1"))
    assert (edge.cpus, edge.memory_bytes, edge.arch, edge.threads) == (1.0, 2**30, "amd64", 1)
    capped = resolve(DeviceSpec(name="e2", cpus=0.5, memory="64m"))
    assert (capped.cpus, capped.memory_bytes, capped.threads) == (0.5, 64 * 2**20, 1)
    jetson = resolve(DeviceSpec(name="j", profile="jetson"))
    assert (jetson.arch, jetson.cpus, jetson.threads) == ("arm64", 4.0, 4)
    assert resolve(DeviceSpec(name="c", profile="cloud")).cpus is None
    assert DeviceSpec(name="x", arch="aarch64").arch == "arm64"


def test_gpu_profile_refuses_or_falls_back_per_spec() -> None:
    with pytest.raises(ResourceUnavailable, match="'g' asks for 1 GPU.*on_missing_gpu"):
        resolve(DeviceSpec(name="g", profile="gpu"), gpus_available=0)
    fallback = resolve(DeviceSpec(name="g", profile="gpu", on_missing_gpu="fallback"), 0)
    assert fallback.gpus == 0 and "fallback" in fallback.notes[0]
    assert resolve(DeviceSpec(name="g", profile="gpu"), gpus_available=1).gpus == 1


def test_unknown_profile_lists_known_keys() -> None:
    with pytest.raises(KeyError, match="known device profiles: cloud, desktop, edge, gpu, jetson, jetson-tx1, jetson-tx2"):
        get_profile("mainframe")


def test_names_are_labelled_unambiguous_and_short() -> None:
    a, ab = RunNames("run-a"), RunNames("run-a-b")
    assert not a.owns_netns(ab.hub_netns) and not a.owns_netns(ab.device_netns("x"))
    assert a.owns_netns(a.device_netns("edge-1")) and is_labelled_netns(a.hub_netns)
    for name in (a.bridge, a.hub_veth(999_999), a.host_if):
        assert len(name) <= 15 and is_labelled_link(name) and a.owns_link(name)
    assert not is_labelled_link("eth0") and not is_labelled_netns("myns")
    with pytest.raises(ValueError, match="run id 'a/b'"):
        RunNames("a/b")


def test_burst_is_sized_for_the_rate_with_a_floor() -> None:
    assert burst_bytes(10**9) == 1_250_000  # 10 ms of credit at 1 Gbit
    assert burst_bytes(10**7) == BURST_FLOOR_BYTES


def test_leaf_queue_holds_20_ms_of_the_rate_with_a_floor() -> None:
    assert queue_packets(10**9) == 1651  # 2.5 MB: 20 ms at 1 Gbit
    assert queue_packets(10**8) == 165
    assert queue_packets(10**7) == 32  # the floor: 39 ms at 10 Mbit
    with pytest.raises(ValueError, match="rate 0 bit/s"):
        queue_packets(0)


def test_egress_plans() -> None:
    own = LinkSettings(rate="10mbit")
    plan = egress_plan(own, [])
    assert plan is not None and plan.default_minor == DEFAULT_MINOR
    # root; small packets first (prio 0); the rest: guaranteed rates add up to the link,
    # each class capped at the link
    assert [(c.minor, c.rate_bps, c.ceil, c.prio, c.small) for c in plan.classes] == [
        (1, 10**7, 10**7, 1, False),
        (SMALL_MINOR, 10**6, 10**7, 0, True),
        (DEFAULT_MINOR, 9 * 10**6, 10**7, 1, False),
    ]
    with_pair = egress_plan(own, [("10.213.0.2", LinkSettings(rate="5mbit"))])
    assert with_pair is not None
    children = with_pair.classes[1:]
    assert sum(c.rate_bps for c in children) == 10**7  # the link caps all of them together
    assert [(c.rate_bps, c.ceil, c.dst) for c in children[1:]] == [
        (45 * 10**5, 10**7, None),
        (45 * 10**5, 5 * 10**6, "10.213.0.2"),
    ]
    assert egress_plan(None, []) is None
    pairs_only = egress_plan(None, [("10.213.0.2", LinkSettings(rate="5mbit"))])
    assert pairs_only is not None and pairs_only.default_minor == 0  # unmatched: direct
    assert pairs_only.classes[0].dst == "10.213.0.2"
    faster = egress_plan(LinkSettings(rate="20mbit"), [])
    assert faster is not None and faster.structure == plan.structure  # changed in place


def test_pair_inside_device_link_composes() -> None:
    outer = LinkSettings(rate="10mbit", delay="10ms", loss="10%")
    both = compose(outer, LinkSettings(rate="50mbit", delay="5ms", loss="10%"))
    assert both.rate_bps == 10**7 and both.delay_s == pytest.approx(0.015)
    assert both.loss_pct == pytest.approx(19.0)
    links = {("a",): LinkSettings(rate="10mbit"), ("a", "b"): LinkSettings(rate="5mbit")}
    plan = device_egress(links, "b", {"a": "10.213.0.1", "b": "10.213.0.2"})
    assert plan is not None and plan.classes[0].dst == "10.213.0.1"
    assert path_rate_bps(links, "a", "b") == 5 * 10**6
    assert path_rate_bps(links, "a", "c") == 10**7
    assert path_rate_bps(links, "b", "c") is None


def test_unshaped_destinations_get_a_class_beside_the_link() -> None:
    from testbed.emulation.shaping import UNLIMITED_BPS, UNSHAPED_MINOR_BASE

    links = {("a",): LinkSettings(rate="10mbit")}
    shaped = device_egress(links, "a", {"a": "10.213.0.1"})
    plan = device_egress(links, "a", {"a": "10.213.0.1"}, ["10.213.0.254"])
    assert plan is not None and shaped is not None
    assert plan.classes[: len(shaped.classes)] == shaped.classes  # the link is unchanged
    (free,) = plan.classes[len(shaped.classes):]
    assert (free.minor, free.parent_minor, free.dst) == (UNSHAPED_MINOR_BASE, None, "10.213.0.254")
    assert free.ceil == UNLIMITED_BPS and plan.default_minor == shaped.default_minor
    assert device_egress({}, "a", {"a": "10.213.0.1"}, ["10.213.0.254"]) is None  # nothing shaped


def test_netem_refused_with_link_and_setting_named() -> None:
    spec = _cluster(links=[{"device": "a", "rate": "10mbit", "delay": "20ms"}])
    with pytest.raises(NetemUnavailable, match=r"link device 'a' asks for delay '20ms'.*netem"):
        require_netem(spec, available=False)
    require_netem(spec, available=True)
    assert netem_options(LinkSettings(delay="20ms", loss="1%"), 10**7) == {
        "limit": 1000,
        "delay": 20000,
        "loss": 1.0,
    }


def test_selector_and_probe_result_math() -> None:
    assert selector_of(["b", "a"]) == ("a", "b") == selector_of(("a", "b"))
    with pytest.raises(ValueError, match="selector"):
        selector_of(["a"])
    result = ProbeResult(
        "a", "b", 10**7, payload_bytes=1_181_000, duration_s=1.0, mss=1448, mtu=1500
    )
    assert result.goodput_bps == pytest.approx(9.448e6)
    assert result.wire_bps == pytest.approx(9.448e6 * 1514 / 1448)
    fidelity = Fidelity("full")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fidelity.record(result)  # 0.988: within 5%
    slow = ProbeResult("a", "b", 10**7, 500_000, 1.0, 1448, 1500)
    with pytest.warns(FidelityWarning, match="off by more than 5%"):
        fidelity.record(slow)
    assert len(fidelity.probes) == 2 and len(fidelity.notes) == 1


def test_fallback_assigns_cpus_round_robin() -> None:
    devices = [resolve(DeviceSpec(name=n, cpus=c)) for n, c in (("a", 0.5), ("b", 1.5))]
    devices.append(resolve(DeviceSpec(name="c", profile="cloud")))
    assert assign_cpus(devices, [0, 1]) == {"a": [0], "b": [0, 1]}


class RecordingIPRoute:
    """Stands in for pyroute2's IPRoute: records tc calls instead of sending them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, dict[str, object]]] = []

    def tc(self, command: str, kind: str | None = None, index: int = 0, **kw: object) -> None:
        self.calls.append((command, kind, kw))


def test_apply_plan_changes_in_place_or_rebuilds() -> None:
    from testbed.emulation.tc import apply_plan

    first = egress_plan(LinkSettings(rate="10mbit"), [])
    ipr = RecordingIPRoute()
    apply_plan(ipr, 1, first, None)
    assert [c[:2] for c in ipr.calls] == [
        ("del", None),
        ("add", "htb"),
        ("add-class", "htb"),  # root: no queue of its own (inner)
        ("add-class", "htb"),  # small packets: its queue, then the filter that fills it
        ("replace", "pfifo"),
        ("add-filter", "u32"),
        ("add-class", "htb"),  # the rest
        ("replace", "pfifo"),
    ]
    root, small, default = (ipr.calls[i][2] for i in (2, 3, 6))
    assert root["burst"] == BURST_FLOOR_BYTES and root["rate"] == root["ceil"] == 1_250_000
    assert (small["prio"], small["rate"], small["ceil"]) == (0, 125_000, 1_250_000)
    assert (default["prio"], default["rate"], default["ceil"]) == (1, 1_125_000, 1_250_000)
    assert ipr.calls[5][2]["keys"] == ["0x00000000/0x0000ff80+0"]  # IPv4 total length < 128
    assert ipr.calls[5][2]["prio"] == 2 and ipr.calls[5][2]["target"] == 0x10002
    assert ipr.calls[7][2]["limit"] == 32 and ipr.calls[7][2]["parent"] == 0x10010
    delayed = egress_plan(LinkSettings(rate="20mbit", delay="5ms"), [])
    ipr = RecordingIPRoute()
    apply_plan(ipr, 1, delayed, first)  # same tree: change rates, netem leaves (small too)
    assert [c[:2] for c in ipr.calls] == [
        ("change-class", "htb"),
        ("change-class", "htb"),
        ("replace", "netem"),
        ("change-class", "htb"),
        ("replace", "netem"),
    ]
    assert ipr.calls[4][2]["delay"] == 5000 and ipr.calls[4][2]["parent"] == 0x10010
    ipr = RecordingIPRoute()
    apply_plan(ipr, 1, first, delayed)  # netem no longer wanted: a FIFO replaces it
    assert ("replace", "pfifo") == ipr.calls[-1][:2] and ipr.calls[-1][2]["handle"] == 0x100000
    ipr = RecordingIPRoute()
    with_pair = egress_plan(
        LinkSettings(rate="10mbit"), [("10.213.0.2", LinkSettings(rate="1mbit"))]
    )
    apply_plan(ipr, 1, with_pair, first)  # new class: rebuilt, with a u32 filter for the peer
    assert ipr.calls[0][:2] == ("del", None) and ipr.calls[-1][:2] == ("add-filter", "u32")
    assert ipr.calls[-1][2]["keys"] == ["0x0ad50002/0xffffffff+16"]
    assert ipr.calls[-1][2]["prio"] == 1  # before the small-packet filter (prio 2)
