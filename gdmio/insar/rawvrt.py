"""GDAL VRTs over headerless binary rasters (ROI_PAC, GAMMA, ISCE2 without a .vrt).

The VRT describes where each band's pixels are in the file (offsets, byte order), so
the binary is read window by window through GDAL like any raster, never copied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from xml.sax.saxutils import escape

from affine import Affine
from rasterio.crs import CRS

from gdmio.atomic import write_text

__all__ = ["raw_vrt"]


def raw_vrt(folder: Path, source: Path, width: int, height: int, *, bands: int = 1,
            band_index: int = 1, interleave: str = "BIL", dtype: str = "Float32",
            big_endian: bool = False, crs: CRS | None = None,
            transform: Affine | None = None, nodata: float | None = None) -> Path:
    """Write (once) a one-band VRT on band ``band_index`` of a raw binary file.

    ``interleave`` is ``BIL`` (lines of each band alternate: ROI_PAC ``rmg``, ISCE2
    ``BIL``), ``BSQ`` or ``BIP``. Returns the VRT path (named after the source and
    band, so the same call gives the same file).
    """
    size = {"Float32": 4, "Float64": 8, "Int16": 2, "Byte": 1, "UInt16": 2,
            "CFloat32": 8}[dtype]
    b = band_index - 1
    if interleave == "BIL":
        offset, pixel, line = b * width * size, size, bands * width * size
    elif interleave == "BSQ":
        offset, pixel, line = b * width * height * size, size, width * size
    elif interleave == "BIP":
        offset, pixel, line = b * size, bands * size, bands * width * size
    else:
        raise ValueError(f"unknown interleave {interleave!r}")
    src = source.absolute()
    expected = (bands * width * height * size)
    actual = src.stat().st_size
    if actual < expected:
        from gdmcore import InputError

        raise InputError(f"{source.name} holds {actual} bytes, {width}x{height}x{bands} "
                         f"{dtype} needs {expected}: wrong header or truncated file")
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs is not None:
        parts.append(f"<SRS>{escape(crs.to_wkt())}</SRS>")
    if transform is not None:
        parts.append("<GeoTransform>" + ", ".join(repr(v) for v in transform.to_gdal())
                     + "</GeoTransform>")
    parts.append(f'<VRTRasterBand dataType="{dtype}" band="1" subClass="VRTRawRasterBand">')
    parts.append(f'<SourceFilename relativeToVRT="0">{escape(str(src))}</SourceFilename>')
    parts.append(f"<ImageOffset>{offset}</ImageOffset><PixelOffset>{pixel}</PixelOffset>"
                 f"<LineOffset>{line}</LineOffset>"
                 f"<ByteOrder>{'MSB' if big_endian else 'LSB'}</ByteOrder>")
    if nodata is not None:
        parts.append(f"<NoDataValue>{nodata!r}</NoDataValue>")
    parts.append("</VRTRasterBand></VRTDataset>")
    text = "\n".join(parts)
    key = hashlib.sha1(f"{src}:{band_index}:{text}".encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{source.name}.b{band_index}.{key}.vrt"
    if not out.exists():
        write_text(out, text)
    return out
