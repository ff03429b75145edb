"""The correction options of the SAR steps as command-line options (gdm sar run/timeseries).

One decorator adds them to a command; :func:`correction_kwargs` takes them back out of the
command's arguments as :class:`insar.options.CorrectionOptions` fields. Options left out
keep the model's default (the one truth for defaults).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["correction_options", "correction_kwargs"]


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.time | None:
    if value is None:
        return None
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time of day HH:MM (UTC)") from None


_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any], str, Callable[[Any], Any] | None]] = [
    (("--troposphere",), {"type": click.Choice(["none", "era5", "gacos"]),
                          "help": "Weather-model correction (default none): ERA5 "
                          "pressure-level NetCDF or GACOS ZTD grids from --weather-dir "
                          "(else fetched from $GDM_ERA5_URL / $GDM_GACOS_URL)."},
     "troposphere", None),
    (("--weather-dir",), {"type": click.Path(path_type=Path),
                          "help": "Folder of ERA5 *.nc or GACOS YYYYMMDD.ztd(+.rsc) files."},
     "weather_dir", None),
    (("--acquisition-time",), {"callback": _time, "metavar": "HH:MM",
                               "help": "UTC time of the acquisitions (ERA5 time "
                               "interpolation)."}, "acquisition_time", None),
    (("--stratified",), {"is_flag": True, "default": None,
                         "help": "Empirical stratified troposphere (FLATSIM): a "
                         "phase/elevation ratio per interferogram (needs heights)."},
     "stratified", None),
    (("--ramp",), {"type": click.Choice(["none", "linear", "quadratic"]),
                   "help": "Ramp removed from each interferogram (default none)."},
     "ramp", None),
    (("--per-pair-models",), {"is_flag": True, "default": None,
                              "help": "Remove each pair's own ramp/elevation fit instead of "
                              "the network-consistent one."},
     "correction_network", lambda v: not v),
    (("--heights",), {"type": click.Path(path_type=Path),
                      "help": "DEM GeoTIFF (m above the ellipsoid) for the stratified and "
                      "ERA5 corrections (default: the stack's geometry.npz)."},
     "heights", None),
    (("--no-closure-correction",), {"is_flag": True, "default": None,
                                    "help": "Do not correct unwrapping errors (whole cycles) "
                                    "by phase closure."},
     "closure_correction", lambda v: not v),
    (("--loop-threshold",), {"type": float, "help": "Loop-error threshold on the triplet "
                             "closure, rad (default 1.5, LiCSBAS)."}, "loop_threshold", None),
    (("--min-unwrapped-fraction",), {"type": float, "help": "Drop pairs with less of the "
                                     "grid unwrapped (default 0.1)."},
     "min_unwrapped_fraction", None),
    (("--max-phase-variance",), {"type": float, "help": "Drop pairs noisier than this "
                                 "(rad^2 of neighbour phase differences; default 1.0)."},
     "max_phase_variance", None),
    (("--max-misclosure-fraction",), {"type": float, "help": "Drop pairs whose triplets "
                                      "misclose on more of the grid (default 0.3)."},
     "max_misclosure_fraction", None),
    (("--coherence-window",), {"type": int, "help": "Window (pixels) of the mean-coherence "
                               "mask (default 5; 1 = per pixel)."}, "coherence_window", None),
    (("--no-gap-mask",), {"is_flag": True, "default": None,
                          "help": "Keep pixels whose own network has extra gaps."},
     "mask_network_gaps", lambda v: not v),
    (("--max-loop-errors",), {"type": int, "help": "Mask pixels with more loop errors left "
                              "after the correction (default: no such mask)."},
     "max_loop_errors", None),
]


def correction_options(fn: Callable) -> Callable:
    """Add the correction options to a click command."""
    for decls, kw, _, _ in reversed(_OPTIONS):
        fn = click.option(*decls, **kw)(fn)
    return fn


def correction_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the correction options from a command's ``kwargs``: the fields given."""
    out = {}
    for decls, _, field, convert in _OPTIONS:
        name = decls[0].lstrip("-").replace("-", "_")
        value = kwargs.pop(name, None)
        if value is None:
            continue
        out[field] = convert(value) if convert else value
    return out
