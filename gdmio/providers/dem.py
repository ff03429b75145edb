"""Copernicus GLO-30 DEM tiles for an AOI: fetched once, mosaicked and cropped, cached.

Tiles are 1 x 1 degree COGs named by their south-west corner, as in the public
``copernicus-dem-30m`` bucket: ``Copernicus_DSM_COG_10_N45_00_E005_00_DEM/
Copernicus_DSM_COG_10_N45_00_E005_00_DEM.tif``. Tiles over open sea do not exist in the
archive (404): they are filled with 0 m (sea level) and listed in the output's
``MISSING_TILES`` tag (``none`` when every tile exists); if no tile at all exists the
fetch fails. Heights are metres above the EGM2008 geoid. Base URL: argument or ``$GDM_DEM_URL``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.merge import merge

from gdmio._util import quiet_rasterio
from gdmio.atomic import atomic_path
from gdmio.cache import SceneCache
from gdmio.download import RemoteError, RetryPolicy, download
from gdmio.outbound import archive_policy
from gdmio.providers._http import base_url

__all__ = ["DEFAULT_DEM_URL", "DemClient", "tile_name", "tiles_for_bounds"]

DEFAULT_DEM_URL = "https://copernicus-dem-30m.s3.amazonaws.com"


def tile_name(lat: int, lon: int) -> str:
    """GLO-30 tile name for the 1-degree cell whose south-west corner is (lat, lon)."""
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"Copernicus_DSM_COG_10_{ns}{abs(lat):02d}_00_{ew}{abs(lon):03d}_00_DEM"


def tiles_for_bounds(west: float, south: float, east: float, north: float) -> list[str]:
    """Names of the tiles covering a lon/lat box (west to east, south to north)."""
    lats = range(math.floor(south), max(math.ceil(north), math.floor(south) + 1))
    lons = range(math.floor(west), max(math.ceil(east), math.floor(west) + 1))
    return [tile_name(la, lo) for la in lats for lo in lons]


class DemClient:
    """Fetch GLO-30 tiles and produce a DEM cropped to an AOI.

    Parameters
    ----------
    base_url
        Bucket URL; default ``$GDM_DEM_URL`` or the public AWS bucket.
    policy, sleep
        Retries for the tile downloads.

    """

    def __init__(self, base_url: str | None = None, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url_or_default(base_url)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    def tile(self, name: str, cache: SceneCache) -> Path | None:
        """Local path of one tile (downloaded once), ``None`` if the archive has none."""
        url = f"{self.base_url}/{name}/{name}.tif"

        def fill(dest: Path) -> None:
            download(url, dest, label=name, policy=self.policy, sleep=self.sleep,
                     outbound=archive_policy(self.base_url))

        try:
            return cache.get(f"dem:{name}", f"{name}.tif", fill)
        except RemoteError as exc:
            if exc.status == 404:
                return None
            raise

    def fetch(self, aoi: Any, cache: SceneCache, margin: float = 0.01) -> Path:
        """A float32 GeoTIFF (EPSG:4326) of the DEM over ``aoi`` plus ``margin`` degrees.

        Raises
        ------
        RemoteError
            When no tile covers the AOI or a download fails (after retries).

        """
        w, s, e, n = aoi.bounds
        w, s, e, n = w - margin, s - margin, e + margin, n + margin
        names = tiles_for_bounds(w, s, e, n)
        digest = hashlib.sha256(f"{w:.6f},{s:.6f},{e:.6f},{n:.6f}".encode()).hexdigest()[:12]
        key = f"dem-crop:{self.base_url}:{digest}"

        def fill(dest: Path) -> None:
            paths = {name: self.tile(name, cache) for name in names}
            have = [p for p in paths.values() if p is not None]
            if not have:
                raise RemoteError(f"DEM: no GLO-30 tile covers {w:.3f},{s:.3f},{e:.3f},"
                                  f"{n:.3f} ({', '.join(names)} not found)", 404)
            missing = sorted(k for k, p in paths.items() if p is None)
            with contextlib.ExitStack() as stack:
                for name, p in paths.items():
                    if p is not None:
                        stack.enter_context(cache.use(f"dem:{name}"))
                with quiet_rasterio():
                    sources = [stack.enter_context(rasterio.open(p)) for p in have]
                    nodata = sources[0].nodata
                    fill_value = -32767.0 if nodata is None else float(nodata)
                    mosaic, transform = merge(sources, bounds=(w, s, e, n), nodata=fill_value,
                                              dtype="float32")
                    crs = sources[0].crs
            data = mosaic[0].astype(np.float32)
            data[data == fill_value] = 0.0 if missing else np.nan
            with atomic_path(dest) as tmp, quiet_rasterio(), rasterio.open(
                    tmp, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                    count=1, dtype="float32", crs=crs, transform=transform,
                    nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256,
                    compress="DEFLATE", predictor=3) as out:
                out.write(data, 1)
                out.update_tags(SOURCE="Copernicus GLO-30", VERTICAL_DATUM="EGM2008",
                                TILES=",".join(names),
                                MISSING_TILES=",".join(missing) or "none")

        return cache.get(key, f"dem_{digest}.tif", fill)


def base_url_or_default(given: str | None) -> str:
    """The DEM bucket URL: argument, ``$GDM_DEM_URL`` or the public bucket."""
    return base_url(given, "GDM_DEM_URL", DEFAULT_DEM_URL)
