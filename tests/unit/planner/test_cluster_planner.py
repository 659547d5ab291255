"""The cluster planner's pure parts on literal tables: configurations, the step-rate model, the
seed's eq. (4) under dynamic assignment, power and energy, and the preference orderings."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from testbed.planner.choose import check_preference, rank
from testbed.planner.cluster import (
    Config,
    DeviceProfile,
    Links,
    PowerFit,
    Workload,
    enumerate_configs,
)
from testbed.planner.estimate import estimate, first_steps_s, step_rates, utilisation
from testbed.planner.power_fit import fit_power
from testbed.planner.ranking import make_plan
from testbed.planner.schedule import closed_form_s, dynamic_schedule

DESKTOP = DeviceProfile("desktop", 1.0, step_s=0.2, worker_cpu_s=0.16, ps_cpu_s=0.04,
                        startup_s=8.0, startup_cpu_s={"worker": 3.0, "ps": 3.0},
                        power=PowerFit(45.0, 125.0))  # fmt: skip
TX2 = DeviceProfile("tx2", 0.5, step_s=0.5, worker_cpu_s=0.2, ps_cpu_s=0.05, startup_s=24.0,
                    startup_cpu_s={"worker": 3.0, "ps": 3.0}, power=PowerFit(2.0, 13.0))
TX1 = replace(TX2, name="tx1", quota_cpus=0.25, step_s=1.0, power=PowerFit(2.0, 8.0))
PROFILES = {"desktop": DESKTOP, "tx2": TX2, "tx1": TX1}
LINKS = Links({"desktop": 8e7, "tx2": 8e7, "tx1": 8e7})  # 10 MB/s each, no latency
WORK = Workload(steps=100, pull_bytes=1_000_000, push_bytes=1_000_000)


def test_three_devices_give_the_seeds_seven_configurations_server_on_the_fastest() -> None:
    found = enumerate_configs(PROFILES)
    assert [c.label for c in found.feasible] == [
        "desktop", "tx2", "tx1", "desktop+tx2", "desktop+tx1", "tx2+tx1", "desktop+tx2+tx1"]
    assert [c.ps for c in found.feasible] == [
        "desktop", "tx2", "tx1", "desktop", "desktop", "tx2", "desktop"]
    assert not found.infeasible


def test_a_device_that_cannot_hold_the_model_makes_its_configurations_infeasible() -> None:
    small = replace(TX1, feasible=False, reason="cannot hold the model: OOM kill (limit 64 MiB)")
    found = enumerate_configs({**PROFILES, "tx1": small})
    assert [c.label for c in found.feasible] == ["desktop", "tx2", "desktop+tx2"]
    assert [i.config.label for i in found.infeasible] == [
        "tx1", "desktop+tx1", "tx2+tx1", "desktop+tx2+tx1"]
    assert all("OOM" in i.reason for i in found.infeasible)
    plan = make_plan({**PROFILES, "tx1": small}, LINKS, WORK, "time")
    assert plan.pick.config.label in ("desktop", "desktop+tx2")  # ranked without crashing
    assert sum(r["rank"] is None for r in plan.rows()) == 4
    with pytest.raises(ValueError, match=r"no feasible configuration: tx1: tx1: cannot hold"):
        make_plan({"tx1": small}, LINKS, WORK, "time").pick


def test_step_rates_on_hand_computed_numbers() -> None:
    """tx2 remote: 0.2/0.5/1.0 = 0.4 s own step, 2 x 0.04 s of the server on the desktop (shared
    with its worker), 2 MB at 10 MB/s = 0.2 s -> 0.68 s. The desktop's worker gets what the server
    leaves: (1 - 0.04 / 0.68) / 0.2 s."""
    rates = step_rates(Config(("desktop", "tx2"), "desktop"), PROFILES, LINKS, WORK)
    assert rates["tx2"] == pytest.approx(1 / 0.68)
    assert rates["desktop"] == pytest.approx((1 - 0.04 / 0.68) / 0.2)
    util = utilisation(Config(("desktop", "tx2"), "desktop"), PROFILES, rates)
    assert util["desktop"] == pytest.approx(1.0)  # worker + server fill the quota
    assert util["tx2"] == pytest.approx(0.2 / 0.68 / 0.5)


def test_two_remote_workers_share_the_servers_link() -> None:
    alone = step_rates(Config(("desktop", "tx2"), "desktop"), PROFILES, LINKS, WORK)["tx2"]
    shared = step_rates(Config(("desktop", "tx2", "tx1"), "desktop"), PROFILES, LINKS, WORK)
    assert shared["tx2"] < alone  # tx1's pulls take part of the desktop's link
    slow = Links({"desktop": 8e6, "tx2": 8e7, "tx1": 8e7})  # the server's link at 1 MB/s
    assert step_rates(Config(("desktop", "tx2"), "desktop"), PROFILES, slow, WORK)["tx2"] \
        == pytest.approx(1 / (0.4 + 0.08 + 2.0))  # fmt: skip


def test_remote_workers_first_pulls_share_the_servers_link_n_ways() -> None:
    """The server's link at 1 MB/s, a 1 MB pull. With two remote workers both first pulls leave at
    once: 2.0 s each, where a steady pull (tx1 pulling 0.25 of the time) gets 1 / 1.25 of the link,
    1.25 s; so 0.75 s extra, on top of each worker's own tracing. The host keeps its profile's."""
    profiles = {"desktop": replace(DESKTOP, first_step_s=1.5, trace_s=9.0),
                "tx2": replace(TX2, first_step_s=7.0, trace_s=2.0),
                "tx1": replace(TX1, first_step_s=7.0, trace_s=3.0)}  # fmt: skip
    slow = Links({"desktop": 8e6, "tx2": 8e7, "tx1": 8e7})
    rates = {"desktop": 1.0, "tx2": 0.25, "tx1": 0.25}
    three = first_steps_s(Config(("desktop", "tx2", "tx1"), "desktop"), profiles, slow, WORK, rates)
    assert three == pytest.approx({"desktop": 1.5, "tx2": 2.75, "tx1": 3.75})
    two = first_steps_s(Config(("desktop", "tx2"), "desktop"), profiles, slow, WORK, rates)
    assert two == pytest.approx({"desktop": 1.5, "tx2": 2.0})  # one remote: nothing shared


def test_a_remote_workers_tracing_delays_its_first_step_in_the_schedule() -> None:
    """tx2 traces for 1000 s: the desktop does 99 of the 100 steps meanwhile and the run ends with
    tx2's first step, at 1000 + 0.68 s."""
    profiles = {**PROFILES, "tx2": replace(TX2, trace_s=1000.0)}
    est = estimate(Config(("desktop", "tx2"), "desktop"), profiles, LINKS, WORK)
    assert est.steps == {"desktop": 99, "tx2": 1}
    assert est.train_s == pytest.approx(1000.68)


def test_a_saturated_server_holds_the_remote_workers_back() -> None:
    busy_ps = replace(DESKTOP, ps_cpu_s=0.15, worker_cpu_s=0.05)  # the server is most of a step
    remotes = ("a", "b", "c", "d")
    fast = {"desktop": busy_ps, **{n: replace(TX2, name=n, worker_cpu_s=0.01, step_s=0.03,
                                              ps_cpu_s=0.005) for n in remotes}}  # fmt: skip
    links = Links(dict.fromkeys(fast))  # unshaped
    rates = step_rates(Config(("desktop", *remotes), "desktop"), fast, links, WORK)
    assert rates["desktop"] == pytest.approx(0.0, abs=1e-6)
    assert 0.15 * sum(rates[n] for n in remotes) == pytest.approx(1.0, rel=1e-3)  # server-bound


def test_dynamic_assignment_and_the_closed_form() -> None:
    sched = dynamic_schedule({"fast": 1.0, "slow": 4.0}, 100)
    assert sched.steps == {"fast": 80, "slow": 20} and sched.makespan == 80.0
    assert closed_form_s({"fast": 1.0, "slow": 4.0}, 100) == 80.0
    tail = dynamic_schedule({"fast": 1.0, "slow": 4.0}, 5, {"fast": 2.0})
    assert tail.steps == {"fast": 3, "slow": 2} and tail.makespan == 8.0  # slow takes the last
    big = dynamic_schedule({"a": 0.3, "b": 0.7, "c": 1.1}, 500_000)
    assert sum(big.steps.values()) == 500_000
    assert big.makespan == pytest.approx(closed_form_s({"a": 0.3, "b": 0.7, "c": 1.1}, 500_000),
                                         abs=1.1)  # fmt: skip
    with pytest.raises(ValueError, match="expected positive seconds"):
        dynamic_schedule({"a": 0.0}, 10)


def test_one_device_time_power_energy_edp_by_hand() -> None:
    """desktop alone: 100 steps x 0.2 s = 20 s at 170 W; startup 6 CPU-s at 0.75 of 1 CPU = 8 s
    at 45 + 125 x 0.75 W."""
    est = estimate(Config(("desktop",), "desktop"), PROFILES, LINKS, WORK)
    assert est.train_s == pytest.approx(20.0) and est.startup_s == pytest.approx(8.0)
    assert est.energy_j == pytest.approx(170 * 20 + (45 + 125 * 0.75) * 8)
    assert est.time_s == pytest.approx(28.0)
    assert est.power_w == pytest.approx(est.energy_j / 28.0)
    assert est.edp == pytest.approx(est.energy_j * 28.0)
    assert est.steps == {"desktop": 100}


def test_idle_power_counts_while_a_device_waits_for_the_others() -> None:
    both = estimate(Config(("desktop", "tx2"), "desktop"), PROFILES, LINKS, WORK)
    startup_tx2 = 3.0 / (0.5 * 6.0 / (0.5 * 24.0))  # worker CPU only, at tx2's startup share
    assert both.startup_s == pytest.approx(max(8.0, startup_tx2))
    assert both.steps["desktop"] + both.steps["tx2"] == 100
    # rates 4.706 (desktop, less the server's 0.04 s per tx2 step) and 1/0.68 = 1.471 step/s:
    # 100 steps split 76.2 : 23.8 (a fixed split would give 50 : 50)
    assert both.steps == {"desktop": 76, "tx2": 24}
    # tx2 finishes its last step before the desktop: it idles (at idle power) until the end
    idle = both.device_energy_j["tx2"] - both.device_power_w["tx2"] * 24 * 0.68
    assert idle > 0


def test_preferences_order_by_their_metric_and_by_weights() -> None:
    @dataclass(frozen=True)
    class C:
        name: str
        time: float
        energy: float

        def metric(self, m: str) -> float:
            return {"time": self.time, "energy": self.energy, "power": self.energy / self.time,
                    "edp": self.energy * self.time}[m]  # fmt: skip

    fast, frugal, middle = C("fast", 10, 1000), C("frugal", 40, 200), C("middle", 15, 500)
    cands = [frugal, middle, fast]
    assert [c.name for c in rank(cands, "time")] == ["fast", "middle", "frugal"]
    assert [c.name for c in rank(cands, "energy")] == ["frugal", "middle", "fast"]
    assert [c.name for c in rank(cands, "power")] == ["frugal", "middle", "fast"]  # 5, 33, 100 W
    assert [c.name for c in rank(cands, "edp")] == ["middle", "frugal", "fast"]  # 7500, 8000, 10000
    # equal weights on time and energy, each relative to the best: fast 1+5, frugal 4+1, middle 1.5+2.5
    assert [c.name for c in rank(cands, {"time": 1, "energy": 1})] == ["middle", "frugal", "fast"]
    assert [c.name for c in rank(cands, {"time": 3, "energy": 1})] == ["middle", "fast", "frugal"]


@pytest.mark.parametrize(("prefer", "fragment"), [
    ("speed", "unknown preference 'speed'; expected one of time, power, energy, edp"),
    ({"time": 1, "joy": 2}, "unknown metric 'joy'"),
    ({"time": 0}, "at least one > 0"),
])  # fmt: skip
def test_bad_preferences_name_the_value_and_the_form(prefer, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_preference(prefer)


def test_power_fit_recovers_a_linear_model() -> None:
    samples = [{"utilisation": u, "power_w": 2.0 + 13.0 * u, "tx_bps": 0.0} for u in
               (0.0, 0.05, 0.4, 0.9, 1.0)]  # fmt: skip
    fit, unfitted = fit_power(samples)
    assert fit.idle_w == pytest.approx(2.0) and fit.per_util_w == pytest.approx(13.0)
    assert unfitted == ["tx_bps", "rx_bps"] and fit.tx_j_per_bit == 0.0
    with pytest.raises(ValueError, match="utilisation does not vary"):
        fit_power([{"utilisation": 1.0, "power_w": 15.0}] * 4)


def test_five_devices_give_31_configurations_ranked_and_timed() -> None:
    """The time itself is measured by `make bench NAME=planner` (estimation_5_devices_s)."""
    five = {f"d{i}": replace(TX2, name=f"d{i}", step_s=0.2 + 0.1 * i) for i in range(5)}
    links = Links(dict.fromkeys(five, 8e7))
    plan = make_plan(five, links, Workload(500_000, 1_000_000, 1_000_000), "edp")
    assert len(plan.ranked) == 31 and plan.estimation_s > 0
    assert [e.edp for e in plan.ranked] == sorted(e.edp for e in plan.ranked)
