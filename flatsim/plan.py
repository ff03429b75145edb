"""Planning: frames to steps, with deterministic step identifiers.

The graph of a frame is::

    ingest ─► pair(d1,d2) ─┐
          ├─► pair(d1,d3) ─┼─► invert ─► package
          └─► ...         ─┘

The pairs are known only after ingestion (a broken date leaves the network), so a
frame is planned in two stages: :func:`frame_head` before, :func:`plan_frame` after.
Step ids only depend on the campaign id, the frame id and the dates, so a re-plan of a
campaign (resume) names the same steps and finds what is already done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flatsim.spec import CampaignSpec, FrameSpec, NetworkRules
from gdmcore import InputError
from kernels.timeseries import network_components, select_pairs

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


def pair_name(d1: dt.date, d2: dt.date) -> str:
    """``YYYYMMDD_YYYYMMDD`` (earlier date first)."""
    return f"{d1:%Y%m%d}_{d2:%Y%m%d}"


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


def select_network(dates: Sequence[dt.date], bperp: np.ndarray | None,
                   rules: NetworkRules) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of a frame's valid dates under the campaign's rules (sorted)."""
    limit = {} if rules.max_bperp is None or bperp is None else \
        {"bperp": bperp, "max_bperp": rules.max_bperp}
    try:
        pairs = select_pairs(list(dates), rules.mode, max_days=rules.max_days,
                             neighbours=rules.neighbours, **limit)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"pair selection: {exc}") from None
    if not pairs:
        raise InputError("no pair satisfies the network rules (max_days / max_bperp)")
    return sorted(pairs)


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


def network_gaps(dates: Sequence[dt.date], planned: Sequence[tuple[int, int]],
                 available: Sequence[tuple[int, int]]) -> dict:
    """What the network lost: missing pairs, connected components, unbridged gaps.

    ``gaps`` lists the boundaries between consecutive dates that no available pair
    crosses while a planned one did: the series on either side is tied only by the
    NSBAS temporal model there (FLATSIM flags such gaps).
    """
    n = len(dates)
    missing = sorted(set(planned) - set(available))
    comps = network_components(n, list(available)) if available else [[k] for k in range(n)]
    isolated = [dates[c[0]].isoformat() for c in comps if len(c) == 1]

    def crossings(pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        cover = np.zeros(max(n - 1, 0), np.int32)
        for i, j in pairs:
            cover[i:j] += 1
        return cover

    had, has = crossings(planned), crossings(available)
    gaps = [{"after": dates[k].isoformat(), "before": dates[k + 1].isoformat()}
            for k in range(n - 1) if has[k] == 0 and had[k] > 0]
    return {"missing_pairs": [pair_name(dates[i], dates[j]) for i, j in missing],
            "components": len(comps), "isolated_dates": isolated, "gaps": gaps,
            "connected": len(comps) == 1}
