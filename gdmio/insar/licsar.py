"""LiCSAR frame products (COMET): ``GEOC/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif``.

Geocoded GeoTIFFs on EPSG:4326: ``*.geo.unw.tif`` unwrapped phase (float32 radians, 0
or NaN where not unwrapped), ``*.geo.cc.tif`` coherence (uint8 scaled 0-255 in current
products, float 0-1 in older ones). LiCSBAS converts phase to displacement with
``-wavelength / (4 pi)`` (its cumulative displacement is positive towards the
satellite), so positive phase is a range increase. LiCSAR processes Sentinel-1 only:
C band (``metadata/metadata.txt`` may give ``radar_frequency``; else 5.405 GHz).
"""

from __future__ import annotations

from pathlib import Path

import rasterio

from gdmio.insar.base import (
    S1_WAVELENGTH,
    SPEED_OF_LIGHT,
    Band,
    Interferogram,
    dates_in_name,
    describe_band,
    text_of,
)

__all__ = ["is_licsar", "licsar_interferogram"]


def is_licsar(path: Path) -> bool:
    """A ``YYYYMMDD_YYYYMMDD.geo.unw.tif``."""
    return path.name.endswith(".geo.unw.tif") and dates_in_name(path.name) is not None


def _frequency(start: Path) -> float | None:
    for d in [start, *start.parents][:4]:
        meta = d / "metadata" / "metadata.txt"
        if meta.is_file():
            for line in text_of(meta).splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() == "radar_frequency":
                    try:
                        return float(value.split()[0])
                    except (ValueError, IndexError):
                        return None
    return None


def licsar_interferogram(path: Path) -> Interferogram:
    """Describe a LiCSAR interferogram (``.geo.cc.tif`` beside it is the coherence)."""
    d1, d2 = dates_in_name(path.name)  # type: ignore[misc]
    cc = path.with_name(path.name.replace(".geo.unw.tif", ".geo.cc.tif"))
    coh = None
    if cc.is_file():
        with rasterio.open(cc) as ds:
            scale = 1 / 255 if ds.dtypes[0] == "uint8" else 1.0
        coh = Band(str(cc.absolute()), 1, 0.0, scale)
    freq = _frequency(path.parent)
    ifg = Interferogram(fmt="LiCSAR", name=path.name, date1=d1, date2=d2,
                        phase=Band(str(path.absolute()), 1, 0.0), units="rad", sign=1,
                        wavelength=SPEED_OF_LIGHT / freq if freq else S1_WAVELENGTH,
                        coherence=coh)
    return describe_band(ifg)
