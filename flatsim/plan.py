"""Planning: frames to steps, with deterministic step identifiers.

The graph of a frame is::

    ingest ─► pair(d1,d2) ─┐
          ├─► pair(d1,d3) ─┼─► invert ─► package
          └─► ...         ─┘

The pairs are known only after ingestion (a broken date leaves the network), so a
frame is planned in two stages: :func:`frame_head` before, :func:`plan_frame` after.
Step ids only depend on the campaign id, the frame id and the dates, so a re-plan of a
campaign (resume) names the same steps and finds what is already done. The network
itself is the SAR steps' (:mod:`insar.network`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from flatsim.spec import CampaignSpec, FrameSpec
from insar.network import network_gaps, select_network
from insar.products import pair_name

__all__ = ["Step", "step_id", "pair_name", "frame_order", "frame_head", "plan_frame",
           "select_network", "network_gaps", "KINDS"]

KINDS = ("ingest", "pair", "invert", "package")


@dataclass(frozen=True)
class Step:
    """One unit of work of a campaign."""

    id: str
    campaign: str
    frame: str
    kind: str
    pair: str | None = None


def step_id(campaign: str, frame: str, kind: str, pair: str | None = None) -> str:
    """``<campaign>/<frame>/<kind>[/<pair>]``: the same for every plan of a campaign."""
    if kind not in KINDS:
        raise ValueError(f"unknown step kind {kind!r}")
    if (kind == "pair") != (pair is not None):
        raise ValueError("a pair step, and only a pair step, names its pair")
    return f"{campaign}/{frame}/{kind}" + (f"/{pair}" if pair else "")


def frame_order(spec: CampaignSpec) -> list[FrameSpec]:
    """Frames in dispatch order: as listed (the AOI's after), stable."""
    return spec.all_frames()


def frame_head(campaign: str, frame: str) -> Step:
    """The first step of a frame (before its dates are known)."""
    return Step(step_id(campaign, frame, "ingest"), campaign, frame, "ingest")


def plan_frame(campaign: str, frame: str, dates: Sequence[dt.date],
               pairs: Sequence[tuple[int, int]]) -> list[Step]:
    """Every step of a frame once its dates and pairs are known (ingest first)."""
    steps = [frame_head(campaign, frame)]
    for i, j in pairs:
        name = pair_name(dates[i], dates[j])
        steps.append(Step(step_id(campaign, frame, "pair", name), campaign, frame, "pair",
                          name))
    steps.append(Step(step_id(campaign, frame, "invert"), campaign, frame, "invert"))
    steps.append(Step(step_id(campaign, frame, "package"), campaign, frame, "package"))
    return steps
