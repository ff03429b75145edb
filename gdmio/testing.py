"""Helpers for tests and simulators: small georeferenced rasters and SAFE-shaped products.

Nothing here is used by the services themselves.
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from gdmio._util import quiet_rasterio

__all__ = ["make_safe", "write_raster"]


def write_raster(
    path: str | os.PathLike[str],
    data: np.ndarray,
    crs: CRS | str | None,
    transform: Affine | None,
    nodata: float | None = None,
    tags: Mapping[str, Any] | None = None,
    driver: str = "GTiff",
    descriptions: Sequence[str] | None = None,
    **options: Any,
) -> Path:
    """Write a plain (not COG) raster; ``crs``/``transform`` None make it ungeoreferenced.

    JP2 is written losslessly (``driver="JP2OpenJPEG"``).
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    count, height, width = arr.shape
    profile: dict[str, Any] = {
        "driver": driver, "width": width, "height": height, "count": count,
        "dtype": arr.dtype.name, "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if driver == "JP2OpenJPEG":
        profile.update(QUALITY="100", REVERSIBLE="YES", YCC="NO")
    profile.update(options)
    with quiet_rasterio(), rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if tags:
            ds.update_tags(**{k: str(v) for k, v in tags.items()})
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    return Path(path)


def make_safe(
    folder: str | os.PathLike[str],
    date: dt.date,
    bands: Mapping[str, np.ndarray],
    transform: Affine,
    crs: CRS | str = "EPSG:32631",
    tile: str = "31TGL",
    level: str = "L1C",
    zipped: bool = False,
) -> Path:
    """Write a minimal Sentinel-2 SAFE product (band JP2s + placeholder metadata).

    Parameters
    ----------
    folder : str or PathLike
        Where the ``.SAFE`` folder (or ``.SAFE.zip``) is created.
    date : datetime.date
        Sensing date, used in every name.
    bands : mapping
        Band name (``"B04"``...) to uint16 array. For L2A each band is written at the
        resolution given by ``transform`` (in the ``R10m`` folder when 10 m, etc.).
    transform : Affine
        Geotransform of every band.
    crs, tile, level
        CRS, MGRS tile and processing level ("L1C" or "L2A").
    zipped : bool
        Zip the SAFE folder (and remove it); the zip's path is returned.

    Returns
    -------
    pathlib.Path
        The ``.SAFE`` folder or the ``.SAFE.zip`` file.

    """
    stamp = f"{date:%Y%m%d}T103019"
    name = f"S2B_MSI{level}_{stamp}_N0509_R108_T{tile}_{date:%Y%m%d}T123456.SAFE"
    root = Path(folder) / name
    granule = root / "GRANULE" / f"{level}_T{tile}_A032000_{stamp}" / "IMG_DATA"
    res = round(abs(transform.a))
    (root / "manifest.safe").parent.mkdir(parents=True, exist_ok=True)
    (root / "manifest.safe").write_text("<xfdu:XFDU/>\n")
    (root / f"MTD_MSI{level}.xml").write_text("<n1:Level-1C_User_Product/>\n")
    for band, arr in bands.items():
        if level == "L2A":
            path = granule / f"R{res}m" / f"T{tile}_{stamp}_{band}_{res}m.jp2"
        else:
            path = granule / f"T{tile}_{stamp}_{band}.jp2"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_raster(path, np.asarray(arr, dtype=np.uint16), crs, transform,
                     driver="JP2OpenJPEG")
    if not zipped:
        return root
    zpath = root.with_name(name + ".zip")
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(root.rglob("*")):
            zf.write(p, p.relative_to(root.parent).as_posix())
    for p in sorted(root.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    root.rmdir()
    return zpath
