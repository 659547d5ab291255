"""The `job.wire` block of a spec: how stage messages are compressed, per direction."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "fp16", "int8"]


class WireCfg(BaseModel):
    """Per direction: fp32 (as is), fp16, or int8 with a scale per tensor or per channel;
    optionally top-k for gradients. In-process runs apply the same round trip between stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    activations: Precision = Field("fp32", description="activations sent downstream")
    gradients: Precision = Field(
        "fp32", description="gradients (BP) or SG targets sent upstream")
    scale: Literal["per-tensor", "per-channel"] = Field(
        "per-tensor", description="int8: one scale per tensor, or per channel (last axis)")
    topk: float | None = Field(
        None, gt=0, le=1, description="gradients: send only this fraction of the entries, the "
        "largest in magnitude (the rest are 0); null: all")

    @property
    def compressed(self) -> bool:
        return (self.activations, self.gradients, self.topk) != ("fp32", "fp32", None)


# Modes whose stages exchange activations and gradients (or SG targets): the wire applies.
_STAGE_LAYOUTS = ("pipeline", "inprocess")


def check_wire(wire: WireCfg, mode: str, layout: str, algorithm: str) -> None:
    """A compressed wire needs stage messages to compress: pipelines, or in-process stages."""
    if not wire.compressed:
        return
    if layout not in _STAGE_LAYOUTS or algorithm == "kt":
        raise ValueError(
            f"job.wire: compresses stage activations and gradients, but job.mode {mode!r} "
            f"(algorithm {algorithm!r}) sends none; expected a pipeline mode (sg, bp-sync, "
            "bp-pipeline) or inprocess with bp or sg, or job.wire left at fp32"
        )
