"""The seam for corrections between unwrapping and inversion.

A *pair correction* takes one unwrapped interferogram (radians, not referenced, NaN
where not unwrapped) with its context and returns the corrected phase (same shape,
NaN kept); :func:`insar.pairs.process_pair` applies the ones it is given, in order,
after unwrapping and before the pair's rasters are written, and records their names in
``pair.json``. A *screen* looks at the pair records before the inversion and returns the
pairs to leave out with the reason (:func:`insar.inversion.invert_stack` lists them in
its record; never silently).

Corrections are options of the shared steps, so that gdm-sar jobs and FLATSIM campaigns
get them alike: a correction is registered here under a name (:func:`register`) and the
schedulers look names up with :func:`pair_corrections`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PairContext", "PairCorrection", "Screen", "register", "pair_corrections",
           "apply_pair_corrections", "REGISTRY"]


@dataclass(frozen=True)
class PairContext:
    """What a correction may use about the pair it corrects."""

    name: str
    dates: tuple[dt.date, dt.date]
    coherence: np.ndarray
    conncomp: np.ndarray
    wavelength: float | None = None
    transform: Any = None
    crs: Any = None
    extra: dict = field(default_factory=dict)


PairCorrection = Callable[[np.ndarray, PairContext], np.ndarray]
Screen = Callable[[Sequence[dict]], dict[str, str]]

REGISTRY: dict[str, PairCorrection] = {}


def register(name: str, fn: PairCorrection | None = None) -> Any:
    """Register a pair correction under ``name``; ``@register(name)`` as a decorator."""
    if fn is None:
        return lambda f: register(name, f)
    REGISTRY[name] = fn
    return fn


def pair_corrections(names: Sequence[str]) -> list[tuple[str, PairCorrection]]:
    """The registered corrections ``names`` (ValueError naming an unknown one)."""
    out = []
    for n in names:
        if n not in REGISTRY:
            raise ValueError(f"unknown correction {n!r}; known: {', '.join(REGISTRY) or 'none'}")
        out.append((n, REGISTRY[n]))
    return out


def apply_pair_corrections(unwrapped: np.ndarray, ctx: PairContext,
                           corrections: Sequence[tuple[str, PairCorrection]]) -> np.ndarray:
    """Apply ``corrections`` in order; NaN pixels stay NaN."""
    out = unwrapped
    for name, fn in corrections:
        res = np.asarray(fn(out, ctx), np.float32)
        if res.shape != out.shape:
            raise ValueError(f"correction {name} changed the shape {out.shape} -> {res.shape}")
        out = np.where(np.isfinite(out), res, np.nan).astype(np.float32)
    return out
