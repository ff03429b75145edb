"""Quicklooks of SAR products (gdm-sar jobs, ``gdm sar timeseries``, FLATSIM frames)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gdmio.quicklook import interferogram_grid, quicklook_layer
from insar.products import layer

__all__ = ["sar_quicklooks"]


def sar_quicklooks(stage: Path, paths: dict[str, Path], dates: list[dt.date],
                   ifg_dirs: list[Path], prefix: str = "") -> list[Path]:
    """Quicklooks of a SAR time-series product, drawn as the product table says.

    Velocity and displacement in mm/yr and mm with the reference pixel marked, temporal
    and mean coherence, DEM error, an overview of the interferograms. ``paths`` maps
    layer names to their rasters; ``prefix`` starts every title.
    """
    span = f"{dates[0]} to {dates[-1]}"
    wanted = [("velocity", "velocity.png", f"LOS velocity {span}", 1),
              ("timeseries", "displacement.png", f"LOS displacement {span}", len(dates)),
              ("temporal_coherence", "temporal_coherence.png", "Temporal coherence", 1),
              ("mean_coherence", "mean_coherence.png", "Mean coherence of the pairs", 1),
              ("dem_error", "dem_error.png", "DEM error (relative to the reference)", 1)]
    looks = []
    for name, png, title, band in wanted:
        if name in paths and paths[name].is_file():
            looks.append(quicklook_layer(paths[name], stage / png, layer(name),
                                         f"{prefix}{title}", band=band))
    if ifg_dirs:
        looks.append(interferogram_grid(ifg_dirs, stage / "interferograms.png",
                                        f"{prefix}Interferograms (wrapped phase), "
                                        f"{len(ifg_dirs)} pairs"))
    return looks
