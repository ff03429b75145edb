"""The one table of product metadata of every service, by process and file.

Each service keeps the metadata of its rasters beside its code (``gdm_opt.products``,
``insar.products`` for GDM-SAR and FLATSIM, ``dsm_opt.products``), as
:class:`gdmio.writer.LayerMeta` records its writers take their tags and band
descriptions from; this module puts them in one table so that anything reading a
product (the tile server and its legends, the tests that check every product) finds the
record of any file: :func:`layer_for`.
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePosixPath

import dsm_opt.products as dsm
import gdm_opt.products as opt
import insar.products as sar
from gdmio.writer import LayerMeta

__all__ = ["PRODUCT_TABLE", "layer_for"]

_SAR = (*sar.PAIR_LAYERS, *sar.IMPORTED_PAIR_LAYERS, *sar.SERIES_LAYERS,
        *sar.GEOMETRY_LAYERS)

#: Process identifier -> the metadata of every raster it may write.
PRODUCT_TABLE: dict[str, tuple[LayerMeta, ...]] = {
    "gdm-opt": (*opt.LAYERS, *opt.PAIR_LAYERS),
    "gdm-sar": _SAR,
    "dsm-opt": dsm.LAYERS,
    "flatsim-campaign": _SAR,
}


def layer_for(process: str, path: str) -> LayerMeta | None:
    """The metadata of a product file (``.tif``) of a process, or None if not in the table.

    ``path`` is the file's path in the product folder; its stem is matched against
    each record's ``pattern`` (default: its name). Records without a pattern win.
    """
    stem = PurePosixPath(path.replace("\\", "/")).stem
    layers = PRODUCT_TABLE.get(process, ())
    for meta in layers:
        if meta.pattern is None and meta.name == stem:
            return meta
    for meta in layers:
        if meta.pattern is not None and fnmatch.fnmatchcase(stem, meta.pattern):
            return meta
    return None
