"""The table of DSM-OPT products: names, units, descriptions (one per raster)."""

from __future__ import annotations

from gdmio.writer import LayerMeta

__all__ = ["LAYERS", "layer"]

LAYERS = (
    LayerMeta("dsm", "m", "surface height above the WGS84 ellipsoid", cmap="terrain"),
    LayerMeta("ortho", "DN", "left image radiometry on the DSM grid", cmap="gray"),
    LayerMeta("count", "count", "matched points per cell", ("quality",)),
    LayerMeta("uncertainty", "m", "height 1-sigma", ("quality",)),
    LayerMeta("filled", "flag", "1 where the cell was filled by interpolation",
              ("quality",), cmap="gray"),
)
_ALL = {lay.name: lay for lay in LAYERS}


def layer(name: str) -> LayerMeta:
    """A DSM-OPT layer by name (KeyError naming the known ones otherwise)."""
    try:
        return _ALL[name]
    except KeyError:
        raise KeyError(f"unknown DSM-OPT product {name!r}; known: {', '.join(_ALL)}") from None
