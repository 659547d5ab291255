"""The experiment spec's schema: every block as a typed, strict pydantic model, and the checks
across blocks. Reading a spec file, merging its scales and formatting errors: `spec.load`."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from testbed.algorithms import ALGORITHMS
from testbed.data import DATASETS
from testbed.emulation.config import ClusterSpec
from testbed.models import MODELS
from testbed.modes import MODES, get_mode
from testbed.spec.kt import KtCfg, check_kt
from testbed.spec.planner import PlannerCfg, check_planner
from testbed.spec.wire import WireCfg, check_wire

MODE_NAMES = tuple(MODES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelCfg(_Strict):
    name: str
    width: float = Field(1.0, gt=0, le=8, description="width multiplier for hidden layers")
    split_after: list[str] | Literal["auto"] | None = Field(
        None, description="units (or blocks) after which stages end; auto: the partitioner's"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        MODELS.get(v)
        return v


class DataCfg(_Strict):
    dataset: str = "mnist"

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; known datasets: {', '.join(sorted(DATASETS))}")
        return v


class SGCfg(_Strict):
    conditioned: bool = True
    width: PositiveInt = 64
    depth: int = Field(0, ge=0, le=4, description="hidden layers; 0 = linear module")
    kernel: PositiveInt = 3
    lr: PositiveFloat = 3e-3
    grad_scale: PositiveFloat = 1.0
    target_every: PositiveInt = Field(
        1, description="targets go upstream for batch 1 and every k-th after; SG modules "
        "learn from those only")


class LocalCfg(_Strict):
    """Local-loss learning: the auxiliary classifier at each split point."""

    width: PositiveInt = Field(128, description="units of the head's hidden dense layers")
    depth: int = Field(1, ge=0, le=4, description="hidden layers after the pooling; 0 = linear")
    pool: PositiveInt = Field(7, description="feature maps are average-pooled to about pool x pool")
    lr: PositiveFloat | None = Field(None, description="heads' learning rate; default training.lr")


class AlgorithmCfg(_Strict):
    name: str
    sg: SGCfg = SGCfg()
    local: LocalCfg = LocalCfg()
    kt: KtCfg = KtCfg()

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        ALGORITHMS.get(v)
        return v


class TrainingCfg(_Strict):
    batch_size: PositiveInt = 256
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 3e-5
    iterations: PositiveInt
    eval_every: PositiveInt = 1000
    log_every: PositiveInt = 10
    eval_samples: PositiveInt | None = None
    seed: int = 0
    threads: PositiveInt | None = Field(None, description="TF intra-op threads; default all cores")
    checkpoint_every: NonNegativeInt | None = Field(
        None, description="steps between checkpoints of the full training state; 0: none; "
        "default: at each evaluation in process, none in distributed runs")
    checkpoint_keep: PositiveInt = Field(2, description="checkpoints kept (the newest)")

    def checkpoint_interval(self, distributed: bool) -> int:
        """Steps between checkpoints (0: none), the default resolved for the run's kind."""
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        return 0 if distributed else self.eval_every


class StoreCfg(_Strict):
    """Activation store between stages: bounded buffer, what happens when full, SG target age."""

    capacity: PositiveInt = Field(2, description="activations buffered per link (bounds staleness)")
    on_full: Literal["block", "drop"] = Field("block", description="block the sender or drop oldest")
    target_staleness: PositiveInt = Field(16, description="SG targets older than this many steps are dropped")


class ResplitCfg(_Strict):
    """Re-split during a run (job.mode sg): re-plan when the cluster changes, move units."""

    on: Literal["schedule", "drift"] = Field(
        description="schedule: when the cluster schedule changes a device's cpus or a link; "
        "drift: when a stage's measured compute per step moves from the plan's prediction")
    threshold: float = Field(0.1, gt=0, lt=1, description="schedule: re-split when the new "
                             "plan's bound is this fraction faster; drift: when a stage's step "
                             "time moved this fraction")
    min_interval_s: PositiveFloat = Field(10.0, description="seconds between re-splits at least")
    warmup_steps: NonNegativeInt = Field(
        100, description="after a re-split, a stage whose units moved holds them for the first "
        "half of this many steps (its SG module and optimizer learn) and ramps its learning "
        "rate back over the second half")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, raw: Any) -> Any:
        """YAML 1.1 reads the key `on` as true: take it back as the field `on`."""
        if isinstance(raw, dict) and True in raw:
            raw = {("on" if k is True else k): v for k, v in raw.items()}
        return raw


class JobCfg(_Strict):
    mode: Literal[MODE_NAMES] = "inprocess"  # type: ignore[valid-type]
    micro_batches: PositiveInt = Field(4, description="bp-pipeline: GPipe micro-batches per batch")
    replicas: PositiveInt = Field(2, description="dp-async: full-model replicas")
    push_every: PositiveInt | None = Field(None, description="steps between weight pushes; default eval_every")
    store: StoreCfg = StoreCfg()
    wire: WireCfg = WireCfg()
    host: str = Field("127.0.0.1", description="address workers bind and advertise")
    deadline_s: PositiveFloat = Field(30.0, description="deadline of every RPC")
    startup_timeout_s: PositiveFloat = Field(180.0, description="time allowed for workers to report ready")
    resplit: ResplitCfg | None = Field(None, description="re-split during the run (sg with a cluster)")
    on_failure: Literal["stop", "restart"] = Field(
        "stop", description="a dead or hung worker: stop the run (failed), or restart the workers "
        "from the latest checkpoint (training.checkpoint_every)")
    max_restarts: NonNegativeInt = Field(3, description="restarts allowed per run (on_failure: restart)")
    hang_timeout_s: PositiveFloat = Field(
        10.0, description="a worker that answers no health check for this long is lost (hung, "
        "paused or cut off); shorter outages are ridden out")


class InfluxCfg(_Strict):
    """An InfluxDB 2.x (or VictoriaMetrics) write endpoint; overrides INFLUX_* from the environment."""

    url: str = Field(pattern=r"^https?://", description="e.g. http://127.0.0.1:8086")
    token: str = Field("", repr=False, exclude=True, description="never written to spec.yaml")
    org: str = Field("testbed", min_length=1)
    bucket: str = Field("testbed", min_length=1)


class MetricsCfg(_Strict):
    influx: InfluxCfg | None = Field(None, description="extra sink; the run directory is always written")


ACCURACY_LEVELS = (0.9, 0.95, 0.98)


class ReportCfg(_Strict):
    accuracy_levels: list[float] = Field(
        default_factory=lambda: list(ACCURACY_LEVELS),
        description="test accuracies whose training time and steps every summary records")

    @field_validator("accuracy_levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x <= 1 for x in v) or v != sorted(set(v)):
            raise ValueError("expected a non-empty ascending list of distinct accuracies in (0, 1]")
        return v


class Spec(_Strict):
    name: str
    description: str = ""
    model: ModelCfg
    data: DataCfg = DataCfg()
    algorithm: AlgorithmCfg
    training: TrainingCfg
    job: JobCfg = JobCfg()
    cluster: ClusterSpec | None = Field(None, description="devices, links, schedule to emulate")
    placement: dict[str, str] | None = Field(
        None, description="stage index (or 'ps', 'local', 'replica<k>', 'teacher') -> device name"
    )
    metrics: MetricsCfg = MetricsCfg()
    report: ReportCfg = ReportCfg()
    planner: PlannerCfg | None = Field(None, description="pick the devices first (dp-async)")
    scale: str = "paper"

    @model_validator(mode="after")
    def _mode_fits_algorithm(self) -> Spec:
        mode = get_mode(self.job.mode)
        if mode.algorithm is not None and self.algorithm.name != mode.algorithm:
            raise ValueError(f"job.mode {mode.name!r} needs algorithm.name {mode.algorithm!r}, "
                             f"got {self.algorithm.name!r}")
        if mode.micro_batched and self.training.batch_size % self.job.micro_batches:
            raise ValueError(
                f"training.batch_size {self.training.batch_size} is not divisible by "
                f"job.micro_batches {self.job.micro_batches}; expected equal micro-batches"
            )
        check_kt(self.algorithm, self.model, self.job.mode)
        check_auto_split(self)
        check_wire(self.job.wire, mode.name, mode.layout, self.algorithm.name)
        check_placement(self.placement, self.cluster)
        check_planner(self.planner, self.job.mode, self.cluster)
        check_resilience(self)
        return self


def check_auto_split(spec: Spec) -> None:
    """split_after: auto needs devices to partition over and a pipeline of stage workers."""
    if spec.job.resplit is not None and (spec.job.mode != "sg" or spec.cluster is None):
        raise ValueError(
            f"job.resplit moves units between the stage workers of an sg run over a cluster; "
            f"expected job.mode sg and a cluster, got job.mode {spec.job.mode!r}"
            f"{'' if spec.cluster else ' and no cluster'}"
        )
    if spec.model.split_after != "auto":
        return
    if get_mode(spec.job.mode).layout != "pipeline" or spec.cluster is None:
        raise ValueError(
            f"model.split_after: auto plans stages over the cluster's devices; expected a "
            f"cluster and a pipeline mode (sg, bp-sync, bp-pipeline), got job.mode "
            f"{spec.job.mode!r}{'' if spec.cluster else ' and no cluster'}"
        )
    if any(k.isdigit() for k in spec.placement or {}):
        raise ValueError("placement: stage keys with model.split_after: auto; expected the "
                         "partitioner to place the stages (keep only 'ps')")


def check_resilience(spec: Spec) -> None:
    """Checkpoints and restarts cover the BP and SG modes with a fixed split; knowledge transfer,
    local-loss and re-splitting runs have neither yet."""
    if spec.job.resplit is not None and (
        spec.job.on_failure == "restart" or spec.training.checkpoint_every
    ):
        raise ValueError("job.resplit with job.on_failure: restart or training.checkpoint_every: "
                         "checkpoints hold a fixed split; expected on_failure: stop and "
                         "checkpoint_every: 0 when re-splitting")
    if spec.algorithm.name != "kt":
        return
    if spec.job.on_failure == "restart":
        raise ValueError("job.on_failure: got 'restart'; knowledge-transfer runs cannot restart "
                         "workers yet, expected 'stop'")
    if spec.training.checkpoint_every and get_mode(spec.job.mode).distributed:
        raise ValueError(f"training.checkpoint_every: got {spec.training.checkpoint_every}; "
                         "distributed knowledge-transfer runs take no checkpoints, expected 0")


_WORKER_KEY = re.compile(r"^(\d+|ps|local|teacher|replica\d+)$")


def check_placement(placement: dict[str, str] | None, cluster: ClusterSpec | None) -> None:
    """Placement keys are stage indices or worker names; with a cluster, values are its devices."""
    for key, device in (placement or {}).items():
        if not _WORKER_KEY.match(key):
            raise ValueError(
                f"placement: key {key!r} is not understood; expected a stage index ('0', '1', ...)"
                " or a worker name ('ps', 'local', 'teacher', 'replica0', ...)"
            )
        known = [d.name for d in cluster.devices] if cluster is not None else None
        if known is not None and device not in known:
            raise ValueError(
                f"placement: {key!r} -> {device!r} names no device of the cluster; "
                f"known devices: {', '.join(known)}"
            )
