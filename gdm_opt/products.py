"""The table of GDM-OPT products: names, units, descriptions, conventions (one per raster)."""

from __future__ import annotations

from gdmio.writer import LayerMeta

__all__ = ["CONVENTION", "LAYERS", "PAIR_LAYERS", "layer"]

#: Sign convention of optical displacements (DESIGN.md, fixed).
CONVENTION = "east/north positive, later minus earlier position"

_SIGNED = {"convention": CONVENTION, "signed": True}

LAYERS = (
    LayerMeta("east", "m", "east displacement, first to last date", **_SIGNED),
    LayerMeta("north", "m", "north displacement, first to last date", **_SIGNED),
    LayerMeta("magnitude", "m", "horizontal displacement magnitude, first to last date"),
    LayerMeta("score", "1", "correlation score (mean over the pairs for 3+ dates)",
              ("data", "quality"), cmap="magma"),
    LayerMeta("timeseries_east", "m", "east displacement relative to the first date",
              reference="REFERENCE_DATE", per_date=True, **_SIGNED),
    LayerMeta("timeseries_north", "m", "north displacement relative to the first date",
              reference="REFERENCE_DATE", per_date=True, **_SIGNED),
    LayerMeta("velocity_east", "m/yr", "east velocity (weighted least-squares slope)",
              **_SIGNED),
    LayerMeta("velocity_north", "m/yr", "north velocity (weighted least-squares slope)",
              **_SIGNED),
    LayerMeta("residual", "m", "RMS misfit of the pair network", ("quality",)),
    LayerMeta("timeseries_east_std", "m", "formal 1-sigma of the east displacement of each "
              "date (weighted network, scaled by the misfit)", ("quality",), per_date=True),
    LayerMeta("timeseries_north_std", "m", "formal 1-sigma of the north displacement of each "
              "date (weighted network, scaled by the misfit)", ("quality",), per_date=True),
    LayerMeta("velocity_std_east", "m/yr", "1-sigma of the east velocity (the larger of the "
              "formal sigma and the scatter of the series about the line)", ("quality",)),
    LayerMeta("velocity_std_north", "m/yr", "1-sigma of the north velocity (the larger of the "
              "formal sigma and the scatter of the series about the line)", ("quality",)),
)
PAIR_LAYERS = (
    LayerMeta("pair_east", "m", "east displacement of the pair", pattern="*_east",
              **_SIGNED),
    LayerMeta("pair_north", "m", "north displacement of the pair", pattern="*_north",
              **_SIGNED),
    LayerMeta("pair_score", "1", "correlation score of the pair", ("data", "quality"),
              pattern="*_score", cmap="magma"),
)
_ALL = {lay.name: lay for lay in (*LAYERS, *PAIR_LAYERS)}


def layer(name: str) -> LayerMeta:
    """A GDM-OPT layer by name (KeyError naming the known ones otherwise)."""
    try:
        return _ALL[name]
    except KeyError:
        raise KeyError(f"unknown GDM-OPT product {name!r}; known: {', '.join(_ALL)}") from None
