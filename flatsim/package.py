"""FLATSIM-like packages of a frame (the campaign product option ``flatsim``).

FLATSIM (ForM@Ter / CNES) delivers each track as a time-series package and an auxiliary
package of GeoTIFFs named ``CNES_<product>_<geometry>_<n>rlks.tiff`` with text lists of
the network's quality. A frame's packages are written under ``<frame>/FLATSIM/`` from
the frame's own products (nothing is recomputed but the geometry layers):

``TS/`` (time series)
    ``CNES_DTs`` displacement time series (one band per date, LOS m, positive towards the
    satellite, relative to the first date), ``CNES_MV-LOS`` mean LOS velocity (m/yr),
    ``CNES_Net`` network misclosure bands (1 RMS triplet misclosure m, 2 loop errors,
    3 pairs corrected by loop closure, 4 gaps of the pixel's network, 5 pairs used),
    ``CNES_TempCoh`` temporal coherence, ``CNES_MeanCoh`` mean coherence, ``CNES_Mask``
    mask bits (0 kept), ``CNES_Tropo`` the weather-model LOS delays when computed;
    ``RMSinterfero_<frame>.txt``, ``RMSdate_<frame>.txt``, ``list_unw_frac_<frame>.txt``,
    ``list_pair_<frame>.txt`` (pairs used), ``dropped_pairs_<frame>.txt``.
``AUX/`` (auxiliary)
    ``CNES_Lut`` lookup table (band 1 latitude, band 2 longitude of each pixel, deg),
    ``CNES_CosENU`` LOS unit vector from the ground to the satellite (bands east, north,
    up), ``CNES_DEM`` terrain heights (m) when known, ``CNES_Incidence`` incidence (deg).

``<geometry>`` is ``geo`` for frames on a map grid, ``radar`` otherwise; ``<n>`` the range
looks of the series grid. Every raster has a PNG preview beside it (same stem).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from gdmio.cog import write_cog
from gdmio.quicklook import quicklook
from insar.corrections import grid_geometry

__all__ = ["package_flatsim", "los_enu"]


def los_enu(incidence_deg: float | np.ndarray, heading_deg: float) -> list[np.ndarray]:
    """(east, north, up) of the unit vector from the ground to a right-looking satellite."""
    th, h = np.radians(incidence_deg), math.radians(heading_deg)
    return [-np.sin(th) * math.cos(h), np.sin(th) * math.sin(h), np.cos(th)]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def package_flatsim(job: Any, info: dict, inv: dict, grid: tuple,
                    geometry_npz: Path | None = None) -> list[str]:
    """Write the FLATSIM-like packages of a frame; returns their files (frame-relative).

    ``grid`` is ``(ny, nx, crs, transform)`` of the series grid; ``geometry_npz`` the
    frame's per-pixel latitude, longitude and heights, if any. The packages are written
    into a temporary folder and published by one rename.
    """
    ny, nx, crs, transform = grid
    d = job.dir
    ts = d / "ts"
    p = job.spec.processing
    rl = p.range_looks * getattr(p, "series_looks", 1)
    geom = "geo" if crs is not None else "radar"
    tag = f"{geom}_{rl}rlks"
    final = d / "FLATSIM"
    if final.exists():
        shutil.rmtree(final)  # redone whole (a package is cheap next to the frame)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-flatsim-", dir=d))
    tsd, aux = tmp / "TS", tmp / "AUX"
    tsd.mkdir()
    aux.mkdir()
    fid = job.frame.id
    span = f"{info['dates'][0]} to {info['dates'][-1]}"
    previews: list[tuple[Path, str, str, dict]] = []
    try:
        # ------------------------------------------------------------------ TS
        copies = [("DTs", "timeseries", "LOS displacement (m)", "m",
                   {"band": len(info["dates"])}),
                  ("MV-LOS", "velocity", "mean LOS velocity (m/yr)", "m/yr", {}),
                  ("TempCoh", "temporal_coherence", "temporal coherence", "",
                   {"cmap": "gray", "symmetric": False, "vmin": 0, "vmax": 1}),
                  ("MeanCoh", "mean_coherence", "mean coherence", "",
                   {"cmap": "gray", "symmetric": False, "vmin": 0, "vmax": 1}),
                  ("Mask", "mask", "mask bits (0 = kept)", "",
                   {"cmap": "viridis", "symmetric": False, "vmin": 0}),
                  ("Tropo", "troposphere", "weather-model LOS delay, first date (m)", "m",
                   {"symmetric": False})]
        for short, src, title, units, kw in copies:
            if not (ts / f"{src}.tif").is_file():
                continue
            out = tsd / f"CNES_{short}_{tag}.tiff"
            shutil.copyfile(ts / f"{src}.tif", out)
            previews.append((out, f"{fid} {title} {span}", units, kw))
        bands = [("misclosure", "RMS triplet misclosure (m)"),
                 ("loop_errors", "loop errors (triplets above the threshold)"),
                 ("unwrapping_corrections", "pairs corrected by loop closure"),
                 ("network_gaps", "gaps of the pixel's network"),
                 ("n_pairs", "pairs used")]
        have = [(n, t) for n, t in bands if (ts / f"{n}.tif").is_file()]
        net = np.stack([_read(ts / f"{n}.tif").astype(np.float32) for n, _ in have])
        out = tsd / f"CNES_Net_{tag}.tiff"
        write_cog(out, net, crs, transform, descriptions=[t for _, t in have],
                  tags={"CONTENT": "network misclosure and redundancy per pixel",
                        "BANDS": ", ".join(n for n, _ in have)})
        previews.append((out, f"{fid} RMS triplet misclosure", "m",
                         {"symmetric": False, "cmap": "magma"}))
        q = ts / "quality"
        for name in ("RMSinterfero", "RMSdate", "list_unw_frac", "dropped_pairs"):
            if (q / f"{name}.txt").is_file():
                shutil.copyfile(q / f"{name}.txt", tsd / f"{name}_{fid}.txt")
        (tsd / f"list_pair_{fid}.txt").write_text(
            "".join(f"{n.replace('_', ' ')}\n" for n in inv["pairs_used"]))
        # ----------------------------------------------------------------- AUX
        geo = grid_geometry((ny, nx), transform, crs, info["incidence_deg"],
                            geometry_npz, p.heights)
        if geo.lat is not None:
            out = aux / f"CNES_Lut_{tag}.tiff"
            write_cog(out, np.stack([geo.lat, geo.lon]).astype(np.float32), crs, transform,
                      descriptions=["latitude (deg)", "longitude (deg)"],
                      tags={"CONTENT": "lookup table: WGS84 latitude and longitude of each "
                            "pixel"})
            previews.append((out, f"{fid} lookup table: latitude", "deg",
                             {"symmetric": False, "cmap": "viridis"}))
        inc = np.broadcast_to(np.asarray(geo.incidence_deg, np.float64), (ny, nx))
        enu = los_enu(inc, info["heading_deg"])
        out = aux / f"CNES_CosENU_{tag}.tiff"
        write_cog(out, np.stack([np.broadcast_to(c, (ny, nx)) for c in enu])
                  .astype(np.float32), crs, transform,
                  descriptions=["east", "north", "up"],
                  tags={"CONTENT": "unit vector from the ground to the satellite (LOS)",
                        "HEADING": str(info["heading_deg"])})
        previews.append((out, f"{fid} LOS vector: up component", "",
                         {"symmetric": False, "cmap": "viridis", "band": 3}))
        out = aux / f"CNES_Incidence_{tag}.tiff"
        write_cog(out, inc.astype(np.float32), crs, transform, tags={"UNITS": "deg"})
        previews.append((out, f"{fid} incidence angle", "deg",
                         {"symmetric": False, "cmap": "viridis"}))
        if geo.height is not None:
            out = aux / f"CNES_DEM_{tag}.tiff"
            write_cog(out, geo.height.astype(np.float32), crs, transform,
                      tags={"UNITS": "m", "CONTENT": "terrain height"})
            previews.append((out, f"{fid} terrain height", "m",
                             {"symmetric": False, "cmap": "terrain"}))
        for path, title, units, kw in previews:
            quicklook(path, path.with_suffix(".png"), title, units, **kw)
        files = sorted(str(Path("FLATSIM") / f.relative_to(tmp))
                       for f in tmp.rglob("*") if f.is_file())
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # else a concurrent attempt published the same first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files
