"""The one table of SAR product names, units and roles (gdm-sar jobs and FLATSIM frames).

File names are ``<name>.tif`` (COG); a gdm-sar job writes the series layers at the top
of its product folder, a FLATSIM frame under ``ts/``; interferograms go to
``interferograms/YYYYMMDD_YYYYMMDD/<pair layer>.tif`` in both; geocoded copies to
``geocoded/<grid>/<name>.tif`` (grid ``utm`` or ``wgs84``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layer", "PAIR_LAYERS", "PAIR_FINE_LAYERS", "SERIES_LAYERS", "GEOMETRY_LAYERS",
           "QUALITY", "PAIR_FILES", "COG_TYPE", "layer", "pair_name"]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass(frozen=True)
class Layer:
    """One product raster: its name (file stem), units, title and STAC roles."""

    name: str
    units: str
    title: str
    roles: tuple[str, ...] = ("data",)

    @property
    def file(self) -> str:
        """``<name>.tif``."""
        return f"{self.name}.tif"


PAIR_LAYERS = (
    Layer("wrapped", "rad", "wrapped (filtered) interferometric phase"),
    Layer("coherence", "1", "coherence (debiased)", ("data", "quality")),
    Layer("unwrapped", "rad", "unwrapped phase (not referenced; see the reference values "
          "in the report)"),
    Layer("conncomp", "label", "connected components of the unwrapping (0: not unwrapped)",
          ("quality",)),
)
PAIR_FILES = tuple(lay.file for lay in PAIR_LAYERS)
PAIR_FINE_LAYERS = (
    Layer("wrapped_fine", "rad", "wrapped (filtered) phase at the interferogram looks"),
    Layer("coherence_fine", "1", "coherence (debiased) at the interferogram looks",
          ("data", "quality")),
)
"""With ``series_looks`` > 1: the pair's interferogram at its own (finer) looks."""

SERIES_LAYERS = (
    Layer("velocity", "m/yr", "LOS velocity (positive towards the satellite)"),
    Layer("timeseries", "m", "LOS displacement time series, relative to the first date"),
    Layer("velocity_std", "m/yr", "velocity 1-sigma", ("quality",)),
    Layer("temporal_coherence", "1", "temporal coherence", ("quality",)),
    Layer("residual", "m", "RMS misfit of the pair network", ("quality",)),
    Layer("misclosure", "m", "RMS triplet misclosure", ("quality",)),
    Layer("n_pairs", "count", "pairs used per pixel", ("quality",)),
    Layer("mean_coherence", "1", "coherence averaged over the pairs", ("quality",)),
    Layer("dem_error", "m", "DEM error"),
)

GEOMETRY_LAYERS = (
    Layer("height", "m", "terrain height above the WGS84 ellipsoid (DEM) on the grid"),
    Layer("latitude", "deg", "latitude of each radar pixel (radar to ground lookup)",
          ("data", "lookup")),
    Layer("longitude", "deg", "longitude of each radar pixel (radar to ground lookup)",
          ("data", "lookup")),
    Layer("radar_row", "pixel", "multilooked radar row of each map pixel (ground to radar "
          "lookup)", ("data", "lookup")),
    Layer("radar_col", "pixel", "multilooked radar column of each map pixel (ground to radar "
          "lookup)", ("data", "lookup")),
    Layer("los_east", "1", "east component of the unit vector from the ground to the "
          "satellite", ("data", "geometry")),
    Layer("los_north", "1", "north component of the ground-to-satellite unit vector",
          ("data", "geometry")),
    Layer("los_up", "1", "up component of the ground-to-satellite unit vector",
          ("data", "geometry")),
)

QUALITY = tuple(lay.name for lay in SERIES_LAYERS if "quality" in lay.roles)

_ALL = {lay.name: lay for lay in (*PAIR_LAYERS, *PAIR_FINE_LAYERS, *SERIES_LAYERS,
                                  *GEOMETRY_LAYERS)}


def layer(name: str) -> Layer:
    """A layer by name (KeyError naming the known ones otherwise)."""
    try:
        return _ALL[name]
    except KeyError:
        raise KeyError(f"unknown SAR product {name!r}; known: {', '.join(_ALL)}") from None


def pair_name(d1, d2) -> str:  # noqa: ANN001 - dates
    """``YYYYMMDD_YYYYMMDD`` (earlier date first): the folder of a pair's layers."""
    return f"{d1:%Y%m%d}_{d2:%Y%m%d}"
