"""Fast tier: device classes, the power model, its integrator, the meter thread and RAPL reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from testbed.emulation.config import DeviceSpec
from testbed.emulation.meter import MeterTarget, PowerMeter
from testbed.emulation.power import RADIOS, Integrator, PowerModel, Usage, edp
from testbed.emulation.profiles import QUOTA_CALIBRATION, REFERENCE_CPUS, get_profile
from testbed.emulation.rapl import Rapl
from testbed.emulation.resolve import resolve
from testbed.emulation.usage import LinkBytes, ProcessCpu, net_bytes


def test_seed_classes_have_sourced_speed_ratio_and_power() -> None:
    desktop, tx2, tx1 = (get_profile(k) for k in ("desktop", "jetson-tx2", "jetson-tx1"))
    # peak FP32: 2 x 640 x 1.455 GHz, 2 x 256 x 1.3 GHz, 2 x 256 x 0.998 GHz
    assert desktop.speed == 1.0
    assert tx2.speed == pytest.approx(665.6 / 1862.4, abs=1e-4)
    assert tx1.speed == pytest.approx(511.0 / 1862.4, abs=1e-4)
    for key, profile in (("desktop", desktop), ("jetson-tx2", tx2), ("jetson-tx1", tx1)):
        calibration = QUOTA_CALIBRATION[key]
        assert profile.cpus == pytest.approx(profile.speed * REFERENCE_CPUS * calibration, abs=1e-4)
        assert profile.power is not None and profile.power.source
        assert profile.power.idle_w < profile.power.busy_w
    assert (tx2.memory, tx1.memory) == ("8g", "4g")
    assert desktop.power.busy_w == 95 + 75  # i7-2600 TDP + GTX 1050 board power
    assert sum(p.cpus for p in (desktop, tx2, tx1)) < 2  # all three fit this 2-core host
    # the calibration raises a quota by at most the bias measured on this host (-3.2%, -9.8%)
    assert QUOTA_CALIBRATION["desktop"] == 1.0
    assert all(1.0 <= c <= 1 / 0.9 for c in QUOTA_CALIBRATION.values())


def test_power_model_is_linear_in_utilisation_and_bits() -> None:
    model = PowerModel(idle_w=2.0, busy_w=10.0, tx_j_per_bit=1e-7, rx_j_per_bit=5e-8)
    assert model.power_w(0.0) == 2.0
    assert model.power_w(0.25) == pytest.approx(4.0)
    assert model.power_w(1.0) == 10.0
    assert model.power_w(1.7) == 10.0  # clipped at the quota
    assert model.power_w(-0.1) == 2.0
    assert model.power_w(0.5, tx_bps=1e7, rx_bps=2e7) == pytest.approx(6.0 + 1.0 + 1.0)


def test_power_model_refuses_bad_numbers() -> None:
    with pytest.raises(ValueError, match="idle_w 5.*busy_w 3"):
        PowerModel(idle_w=5, busy_w=3)
    with pytest.raises(ValueError, match="radio 'carrier-pigeon'"):
        PowerModel(1, 2).with_radio("carrier-pigeon")


def test_integrator_energy_from_cpu_seconds_and_bytes() -> None:
    model = PowerModel(idle_w=10.0, busy_w=50.0, tx_j_per_bit=1e-6)
    integ = Integrator(model, quota_cpus=0.5)
    assert integ.feed(Usage(0.0, 0.0)) is None
    integ.mark("a")
    # 2 s at 0.25 CPU of a 0.5 quota: utilisation 0.5 -> 30 W -> 60 J, plus 1e6 bits -> 1 J
    sample = integ.feed(Usage(2.0, 0.5, tx_bytes=125_000))
    assert sample is not None
    assert sample.utilisation == pytest.approx(0.5)
    assert sample.power_w == pytest.approx(30.0 + 0.5)
    # 1 s idle
    integ.feed(Usage(3.0, 0.5, tx_bytes=125_000))
    integ.mark("b")
    assert integ.between("a", "b") == (pytest.approx(3.0), pytest.approx(61.0 + 10.0))
    assert edp(71.0, 3.0) == 213.0


def test_integrator_ignores_a_clock_that_does_not_advance() -> None:
    integ = Integrator(PowerModel(1, 2), 1.0)
    integ.feed(Usage(1.0, 0.0))
    assert integ.feed(Usage(1.0, 5.0)) is None
    assert integ.energy_j == 0.0


def test_spec_overrides_the_power_model_and_keeps_the_source() -> None:
    spec = DeviceSpec(name="tx2", profile="jetson-tx2", power={"radio": "wifi", "idle_w": 3})
    device = resolve(spec)
    assert device.power is not None
    assert device.power.idle_w == 3 and device.power.busy_w == 15
    assert device.power.tx_j_per_bit == RADIOS["wifi"][0]
    assert "overridden in the spec" in device.power.source
    nj = resolve(DeviceSpec(name="e", profile="edge", power={"idle_w": 1, "busy_w": 4,
                                                             "tx_nj_per_bit": 100}))  # fmt: skip
    assert nj.power is not None and nj.power.tx_j_per_bit == pytest.approx(1e-7)


@pytest.mark.parametrize(
    ("power", "fragment"),
    [({"busy_w": 3}, "no power model, so both idle_w and busy_w"),
     ({"idle_w": 9, "busy_w": 3}, "idle_w 9.0 is above busy_w 3.0"),
     ({"radio": "smoke-signals"}, "radio"),
     ({"idle_w": -1, "busy_w": 3}, "greater than or equal to 0")],
)  # fmt: skip
def test_bad_power_overrides_name_the_problem(power: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        DeviceSpec(name="a", profile="edge", power=power)


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_meter_points_and_summary_between_marks() -> None:
    clock, cpu = _FakeClock(), [0.0]
    points: list[tuple[str, dict[str, float]]] = []
    target = MeterTarget(lambda: (cpu[0], 0, 0), PowerModel(2.0, 12.0), quota_cpus=0.5)
    idle = MeterTarget(lambda: (0.0, 0, 0), None, quota_cpus=1.0)
    meter = PowerMeter({"tx": target, "off": idle}, lambda d, f: points.append((d, f)),
                       clock=clock)  # fmt: skip
    meter.sample()
    meter.mark("start")
    for _ in range(20):  # 2 s busy at the full 0.5 quota, sampled at 10 Hz
        clock.t += 0.1
        cpu[0] += 0.05
        meter.sample()
    meter.mark("end")
    meter.flush()
    summary = meter.summary("start", "end")
    tx = summary["devices"]["tx"]
    assert tx["energy_j"] == pytest.approx(24.0) and tx["utilisation"] == pytest.approx(1.0)
    assert summary["energy_j"] == pytest.approx(24.0)
    assert summary["edp_js"] == pytest.approx(48.0)
    assert "energy_j" not in summary["devices"]["off"]  # no model: utilisation only
    assert "model" in summary["kind"]
    (device, fields), (other, idle_fields) = points
    assert device == "tx" and fields["power_w"] == pytest.approx(12.0)
    assert other == "off" and "power_w" not in idle_fields


def test_meter_refuses_slow_sampling() -> None:
    with pytest.raises(ValueError, match="hz 5"):
        PowerMeter({}, lambda d, f: None, hz=5)


def test_net_bytes_and_link_bytes_from_proc(tmp_path) -> None:
    dev = tmp_path / "42" / "net"
    dev.mkdir(parents=True)
    (dev / "dev").write_text(
        "Inter-|   Receive                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        "    lo:     100       1    0    0    0     0          0         0      100 1 0 0 0 0 0 0\n"
        "  eth0:    5000      10    0    0    0     0          0         0     7000 12 0 0 0 0 0 0\n"
    )
    assert net_bytes(42, proc=tmp_path) == (7000, 5000)
    assert net_bytes(43, proc=tmp_path) is None
    link = LinkBytes(proc=tmp_path)
    assert link.read([43, 42]) == (7000, 5000)
    assert link.read([43]) == (7000, 5000)  # the last reading stands while nothing lives there


def test_process_cpu_keeps_exited_processes(tmp_path) -> None:
    import os

    tick = os.sysconf("SC_CLK_TCK")
    (tmp_path / "7").mkdir()
    stat = tmp_path / "7" / "stat"
    stat.write_text(f"7 (py thon) S 1 1 1 0 -1 0 0 0 0 0 {3 * tick} {tick} 0 0 20 0 1 0\n")
    cpu = ProcessCpu(proc=tmp_path)
    assert cpu.read([7]) == pytest.approx(4.0)
    stat.unlink()
    assert cpu.read([7]) == pytest.approx(4.0)


def test_rapl_reads_package_energy_and_handles_wrap(tmp_path) -> None:
    assert Rapl.find(tmp_path / "absent") is None
    pkg = tmp_path / "intel-rapl:0"
    pkg.mkdir()
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain (core): not summed
    (pkg / "max_energy_range_uj").write_text("1000000\n")
    (pkg / "energy_uj").write_text("900000\n")
    rapl = Rapl.find(tmp_path)
    assert rapl is not None and [d.name for d in rapl.domains] == ["intel-rapl:0"]
    assert rapl.read_j() == 0.0
    (pkg / "energy_uj").write_text("950000\n")
    assert rapl.read_j() == pytest.approx(0.05)
    (pkg / "energy_uj").write_text("50000\n")  # wrapped: 50000 to the top, 50000 after
    assert rapl.read_j() == pytest.approx(0.15)
