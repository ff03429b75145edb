"""The one table of SAR products: names, units, descriptions, conventions, roles.

Used by gdm-sar jobs, ``gdm sar timeseries`` and FLATSIM frames.

File names are ``<name>.tif`` (COG); a gdm-sar job writes the series layers at the top
of its product folder, a FLATSIM frame under ``ts/``; interferograms go to
``interferograms/YYYYMMDD_YYYYMMDD/<pair layer>.tif`` in both; geocoded copies to
``geocoded/<grid>/<name>.tif`` (grid ``utm`` or ``wgs84``).
"""

from __future__ import annotations

from gdmio.writer import LayerMeta

__all__ = ["Layer", "PAIR_LAYERS", "PAIR_FINE_LAYERS", "SERIES_LAYERS", "GEOMETRY_LAYERS",
           "QUALITY", "PAIR_FILES", "IMPORTED_PAIR_LAYERS", "COG_TYPE", "LOS", "PHASE", "layer",
           "pair_name"]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

#: Sign convention of LOS displacements and velocities (DESIGN.md, fixed).
LOS = "LOS, positive towards the satellite"
#: Sign convention of interferometric phase.
PHASE = ("ifg_ij = slc_i * conj(slc_j), i earlier; motion towards the satellite makes "
         "the phase negative")

Layer = LayerMeta  # one metadata record per product raster (gdmio.writer.LayerMeta)

#: ``display_scale`` of layers in metres shown in millimetres.
_MM = 1000.0

PAIR_LAYERS = (
    Layer("wrapped", "rad", "wrapped (filtered) interferometric phase", convention=PHASE,
          signed=True, cmap="twilight"),
    Layer("coherence", "1", "coherence (debiased)", ("data", "quality"), cmap="gray"),
    Layer("unwrapped", "rad", "unwrapped phase (not referenced; see the reference values "
          "in the report)", convention=PHASE, signed=True),
    Layer("conncomp", "label", "connected components of the unwrapping (0: not unwrapped)",
          ("quality",), cmap="tab20"),
)
PAIR_FILES = tuple(lay.file for lay in PAIR_LAYERS)
PAIR_FINE_LAYERS = (
    Layer("wrapped_fine", "rad", "wrapped (filtered) phase at the interferogram looks",
          convention=PHASE, signed=True, cmap="twilight"),
    Layer("coherence_fine", "1", "coherence (debiased) at the interferogram looks",
          ("data", "quality"), cmap="gray"),
)
"""With ``series_looks`` > 1: the pair's interferogram at its own (finer) looks."""

#: Interferograms made elsewhere, as ``gdm sar timeseries`` puts them on its grid.
IMPORTED_PAIR_LAYERS = (
    Layer("los", "m", "LOS displacement of the pair (later minus earlier date)",
          convention=LOS, signed=True, display_units="mm", display_scale=_MM),
)

SERIES_LAYERS = (
    Layer("velocity", "m/yr", "LOS velocity (positive towards the satellite)",
          convention=LOS, reference="REFERENCE_PIXEL", signed=True, display_units="mm/yr",
          display_scale=_MM),
    Layer("timeseries", "m", "LOS displacement time series, relative to the first date",
          convention=LOS, reference="REFERENCE_PIXEL", per_date=True, signed=True,
          display_units="mm", display_scale=_MM),
    Layer("velocity_std", "m/yr", "LOS velocity 1-sigma", ("quality",),
          display_units="mm/yr", display_scale=_MM),
    Layer("temporal_coherence", "1", "temporal coherence", ("quality",), cmap="gray"),
    Layer("residual", "m", "RMS misfit of the pair network", ("quality",),
          display_units="mm", display_scale=_MM),
    Layer("misclosure", "m", "RMS triplet misclosure", ("quality",), display_units="mm",
          display_scale=_MM),
    Layer("n_pairs", "count", "pairs used per pixel", ("quality",)),
    Layer("mean_coherence", "1", "coherence averaged over the pairs", ("quality",),
          cmap="gray"),
    Layer("dem_error", "m", "DEM error (relative to the reference pixel)",
          reference="REFERENCE_PIXEL", signed=True),
    Layer("unwrapping_corrections", "count", "pairs corrected by whole cycles (loop "
          "closure) per pixel", ("quality",)),
    Layer("loop_errors", "count", "triplets whose phase closure exceeded the loop "
          "threshold before the unwrapping-error correction", ("quality",)),
    Layer("network_gaps", "count", "gaps of the pixel's own network (the pairs valid "
          "there)", ("quality",)),
    Layer("mask", "bits", "why a pixel is masked (0 = kept): 1 temporal coherence, 2 mean "
          "coherence, 4 network gap, 8 loop errors, 16 no pair, 32 user mask", ("quality",)),
    Layer("troposphere", "m", "weather-model LOS tropospheric delay of each date "
          "(larger delay = longer range)", ("data",), per_date=True, display_units="mm",
          display_scale=_MM),
)

GEOMETRY_LAYERS = (
    Layer("height", "m", "terrain height above the WGS84 ellipsoid (DEM) on the grid",
          cmap="terrain"),
    Layer("latitude", "deg", "latitude of each radar pixel (radar to ground lookup)",
          ("data", "lookup")),
    Layer("longitude", "deg", "longitude of each radar pixel (radar to ground lookup)",
          ("data", "lookup")),
    Layer("radar_row", "pixel", "multilooked radar row of each map pixel (ground to radar "
          "lookup)", ("data", "lookup")),
    Layer("radar_col", "pixel", "multilooked radar column of each map pixel (ground to radar "
          "lookup)", ("data", "lookup")),
    Layer("los_east", "1", "east component of the unit vector from the ground to the "
          "satellite", ("data", "geometry"), signed=True),
    Layer("los_north", "1", "north component of the ground-to-satellite unit vector",
          ("data", "geometry"), signed=True),
    Layer("los_up", "1", "up component of the ground-to-satellite unit vector",
          ("data", "geometry")),
)

QUALITY = tuple(lay.name for lay in SERIES_LAYERS if "quality" in lay.roles)

_ALL = {lay.name: lay for lay in (*PAIR_LAYERS, *PAIR_FINE_LAYERS, *IMPORTED_PAIR_LAYERS,
                                  *SERIES_LAYERS, *GEOMETRY_LAYERS)}


def layer(name: str) -> Layer:
    """A layer by name (KeyError naming the known ones otherwise)."""
    try:
        return _ALL[name]
    except KeyError:
        raise KeyError(f"unknown SAR product {name!r}; known: {', '.join(_ALL)}") from None


def pair_name(d1, d2) -> str:  # noqa: ANN001 - dates
    """``YYYYMMDD_YYYYMMDD`` (earlier date first): the folder of a pair's layers."""
    return f"{d1:%Y%m%d}_{d2:%Y%m%d}"
