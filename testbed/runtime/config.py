"""A worker's start-up configuration: plain JSON validated with pydantic (never pickle or eval)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.runtime.wire.grpc_util import parse_bind
from testbed.runtime.workdir import worker_file
from testbed.spec.experiment import Spec

ROLES = ("stage", "ps", "replica", "teacher")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class WorkerConfigError(ValueError):
    """A worker config file that cannot be used; names the file, field, value and expected form."""


class WorkerConfig(BaseModel):
    """Everything one worker process needs; the controller writes it, the worker validates it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Literal[ROLES]  # type: ignore[valid-type]
    run_id: str
    spec: Spec
    stage_ids: tuple[int, ...] = Field(default=(), description="contiguous stages held")
    replica_index: int = Field(0, ge=0)
    bind: str = "127.0.0.1:0"
    advertise_host: str | None = Field(None, description="host peers dial; default bind's host")
    workdir: Path = Field(description="ready file, metrics, summary and checkpoints go here")
    t0: float = Field(description="run start, Unix seconds; wall_s in metrics counts from it")
    resume_step: int = Field(0, ge=0, description="continue from the checkpoint at this step "
                             "(the parameter server loads it, trainers pull their stages' state)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"got {v!r}; expected 1-64 letters, digits, '_', '.', '-'")
        return v

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        parse_bind(v)
        return v

    @field_validator("stage_ids")
    @classmethod
    def _contiguous(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if v and list(v) != list(range(v[0], v[0] + len(v))):
            raise ValueError(f"got {list(v)}; expected contiguous ascending stage indices")
        return v

    def path(self, suffix: str) -> Path:
        """workdir/<name><suffix>, suffix one of testbed.runtime.workdir's (READY, METRICS...)."""
        return worker_file(self.workdir, self.name, suffix)


def write_config(cfg: WorkerConfig, path: Path) -> None:
    """Write the config as JSON; only fields given explicitly, so defaults re-apply on load."""
    path.write_text(cfg.model_dump_json(indent=2, exclude_unset=True) + "\n")


def load_config(path: Path) -> WorkerConfig:
    """Read and validate a worker config; errors name the file and the offending field."""
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WorkerConfigError(f"{path}: cannot read worker config: {err}") from None
    try:
        return WorkerConfig.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"{path}: {where}: got {e.get('input')!r}; {e['msg']}")
        raise WorkerConfigError("\n".join(lines)) from None
