"""Write BEAM-DIMAP products (SNAP's .dim + .data/ layout) from real samples, for the tests.

The layout follows what SNAP's BEAM-DIMAP writer produces (version 2.12.1): the XML
header ``NAME.dim`` (Metadata_Id, Dataset_Id, Production, Coordinate_Reference_System,
Geoposition, Raster_Dimensions, Data_Access, Tie_Point_Grids, Image_Interpretation,
Dataset_Sources with the MDElem/MDATTR metadata tree) and, in ``NAME.data/``, one ENVI
raster per band (``.hdr`` + ``.img``, band sequential, big-endian) and the tie-point
grids in ``tie_point_grids/``. Used to build BEAM-DIMAP copies of the Amsterdam ZNAP pair
(and broken variants) in temporary folders.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from gdmio.snap import MetadataElement, SnapProduct, TiePointGrid

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DIMAP_TYPE = {"f4": "float32", "f8": "float64", "i2": "int16", "i4": "int32", "u1": "uint8",
               "u2": "uint16"}
_ENVI_CODE = {"f4": 4, "f8": 5, "i2": 2, "i4": 3, "u1": 1, "u2": 12}


def utc_text(t: dt.datetime) -> str:
    return (f"{t.day:02d}-{_MONTHS[t.month - 1]}-{t.year} {t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}")


def _value_text(kind: str, value) -> tuple[str, int]:
    if value is None:
        return "", 1
    if kind == "utc":
        return utc_text(value), 1
    if isinstance(value, list):
        return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value), len(value)
    if isinstance(value, float):
        return repr(value), 1
    return str(value), 1


def _md_xml(el: MetadataElement, indent: int, out: list[str]) -> None:
    pad = "    " * indent
    if not el.attributes and not el.elements:
        out.append(f"{pad}<MDElem name={quoteattr(el.name)} />")
        return
    out.append(f"{pad}<MDElem name={quoteattr(el.name)}>")
    for name, value in el.attributes.items():
        kind = el.types.get(name, "ascii")
        text, n = _value_text(kind, value)
        attrs = f"name={quoteattr(name)}"
        if name in el.units:
            attrs += f" unit={quoteattr(el.units[name])}"
        attrs += f" type={quoteattr(kind)} mode=\"rw\""
        if n > 1 and kind not in ("ascii", "utc"):
            attrs += f" elems=\"{n}\""
        out.append(f"{pad}    <MDATTR {attrs}>{escape(text)}</MDATTR>")
    for child in el.elements:
        _md_xml(child, indent + 1, out)
    out.append(f"{pad}</MDElem>")


def _envi(path: Path, name: str, data: np.ndarray, big_endian: bool = True) -> None:
    code = data.dtype.str[1:]
    order = ">" if big_endian else "<"
    path.with_suffix(".hdr").write_text(
        "ENVI\n"
        f"description = {{Sentinel-1 IW Level-1 SLC Product - Unit: {name}}}\n"
        f"samples = {data.shape[1]}\nlines = {data.shape[0]}\nbands = 1\n"
        "header offset = 0\nfile type = ENVI Standard\n"
        f"data type = {_ENVI_CODE[code]}\ninterleave = bsq\n"
        f"byte order = {1 if big_endian else 0}\nband names = {{ {name} }}\n")
    data.astype(order + code).tofile(path.with_suffix(".img"))


def write_dimap(dest: Path, name: str, bands: dict[str, tuple[np.ndarray, str]],
                grids: dict[str, TiePointGrid], metadata: MetadataElement,
                start: dt.datetime | None = None, big_endian: bool = True,
                product_type: str = "SLC") -> Path:
    """Write ``dest/NAME.dim`` and ``dest/NAME.data/``; ``bands``: name -> (array, unit)."""
    dest.mkdir(parents=True, exist_ok=True)
    data_dir = dest / f"{name}.data"
    (data_dir / "tie_point_grids").mkdir(parents=True, exist_ok=True)
    (data_dir / "vector_data").mkdir(exist_ok=True)
    shapes = {a.shape for a, _ in bands.values()}
    height, width = next(iter(shapes))
    x: list[str] = ['<?xml version="1.0" encoding="ISO-8859-1"?>',
                    f"<Dimap_Document name={quoteattr(name + '.dim')}>"]
    x += ["    <Metadata_Id>",
          '        <METADATA_FORMAT version="2.12.1">DIMAP</METADATA_FORMAT>',
          "        <METADATA_PROFILE>BEAM-DATAMODEL-V1</METADATA_PROFILE>",
          "    </Metadata_Id>",
          "    <Dataset_Id>",
          "        <DATASET_SERIES>BEAM-PRODUCT</DATASET_SERIES>",
          f"        <DATASET_NAME>{escape(name)}</DATASET_NAME>",
          "    </Dataset_Id>",
          "    <Dataset_Use>",
          "        <DATASET_COMMENTS>Sentinel-1 IW Level-1 SLC Product</DATASET_COMMENTS>",
          "    </Dataset_Use>",
          "    <Production>",
          "        <DATASET_PRODUCER_NAME />",
          f"        <PRODUCT_TYPE>{escape(product_type)}</PRODUCT_TYPE>"]
    if start is not None:
        x.append(f"        <PRODUCT_SCENE_RASTER_START_TIME>{utc_text(start)}"
                 "</PRODUCT_SCENE_RASTER_START_TIME>")
    x += ["    </Production>",
          "    <Coordinate_Reference_System>",
          "        <Horizontal_CS>",
          "            <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>",
          "            <Geographic_CS>",
          "                <Horizontal_Datum>",
          "                    <HORIZONTAL_DATUM_NAME>WGS84</HORIZONTAL_DATUM_NAME>",
          "                    <Ellipsoid>",
          "                        <ELLIPSOID_NAME>WGS84</ELLIPSOID_NAME>",
          "                        <Ellipsoid_Parameters>",
          '                            <ELLIPSOID_MAJ_AXIS unit="M">6378137.0'
          "</ELLIPSOID_MAJ_AXIS>",
          '                            <ELLIPSOID_MIN_AXIS unit="M">6356752.3'
          "</ELLIPSOID_MIN_AXIS>",
          "                        </Ellipsoid_Parameters>",
          "                    </Ellipsoid>",
          "                </Horizontal_Datum>",
          "            </Geographic_CS>",
          "        </Horizontal_CS>",
          "    </Coordinate_Reference_System>"]
    if "latitude" in grids and "longitude" in grids:
        x += ["    <Geoposition>",
              "        <Geoposition_Points>",
              "            <TIE_POINT_GRID_NAME_LAT>latitude</TIE_POINT_GRID_NAME_LAT>",
              "            <TIE_POINT_GRID_NAME_LON>longitude</TIE_POINT_GRID_NAME_LON>",
              "        </Geoposition_Points>",
              "    </Geoposition>"]
    x += ["    <Raster_Dimensions>", f"        <NCOLS>{width}</NCOLS>",
          f"        <NROWS>{height}</NROWS>", f"        <NBANDS>{len(bands)}</NBANDS>",
          "    </Raster_Dimensions>",
          "    <Data_Access>",
          "        <DATA_FILE_FORMAT>ENVI</DATA_FILE_FORMAT>",
          "        <DATA_FILE_FORMAT_DESC>ENVI File Format</DATA_FILE_FORMAT_DESC>",
          "        <DATA_FILE_ORGANISATION>BAND_SEPARATE</DATA_FILE_ORGANISATION>"]
    for k, band in enumerate(bands):
        x += ["        <Data_File>",
              f'            <DATA_FILE_PATH href="{name}.data/{band}.hdr" />',
              f"            <BAND_INDEX>{k}</BAND_INDEX>", "        </Data_File>"]
    for k, g in enumerate(grids):
        x += ["        <Tie_Point_Grid_File>",
              f'            <TIE_POINT_GRID_FILE_PATH href="{name}.data/tie_point_grids/'
              f'{g}.hdr" />',
              f"            <TIE_POINT_GRID_INDEX>{k}</TIE_POINT_GRID_INDEX>",
              "        </Tie_Point_Grid_File>"]
    x.append("    </Data_Access>")
    if grids:
        x += ["    <Tie_Point_Grids>", f"        <NUM_TIE_POINT_GRIDS>{len(grids)}"
              "</NUM_TIE_POINT_GRIDS>"]
        for k, (gname, g) in enumerate(grids.items()):
            x += ["        <Tie_Point_Grid_Info>",
                  f"            <TIE_POINT_GRID_INDEX>{k}</TIE_POINT_GRID_INDEX>",
                  f"            <TIE_POINT_DESCRIPTION>{gname}</TIE_POINT_DESCRIPTION>",
                  f"            <PHYSICAL_UNIT>{escape(g.unit)}</PHYSICAL_UNIT>",
                  f"            <TIE_POINT_GRID_NAME>{gname}</TIE_POINT_GRID_NAME>",
                  "            <DATA_TYPE>float32</DATA_TYPE>",
                  f"            <NCOLS>{g.data.shape[1]}</NCOLS>",
                  f"            <NROWS>{g.data.shape[0]}</NROWS>",
                  f"            <OFFSET_X>{g.offset_x!r}</OFFSET_X>",
                  f"            <OFFSET_Y>{g.offset_y!r}</OFFSET_Y>",
                  f"            <STEP_X>{g.step_x!r}</STEP_X>",
                  f"            <STEP_Y>{g.step_y!r}</STEP_Y>",
                  "            <CYCLIC>false</CYCLIC>",
                  "        </Tie_Point_Grid_Info>"]
            _envi(data_dir / "tie_point_grids" / f"{gname}.img", gname,
                  g.data.astype(np.float32), big_endian)
        x.append("    </Tie_Point_Grids>")
    x.append("    <Image_Interpretation>")
    for k, (band, (arr, unit)) in enumerate(bands.items()):
        dtype = _DIMAP_TYPE[arr.dtype.str[1:]]
        x += ["        <Spectral_Band_Info>",
              f"            <BAND_INDEX>{k}</BAND_INDEX>",
              "            <BAND_DESCRIPTION />",
              f"            <BAND_NAME>{escape(band)}</BAND_NAME>",
              f"            <BAND_RASTER_WIDTH>{arr.shape[1]}</BAND_RASTER_WIDTH>",
              f"            <BAND_RASTER_HEIGHT>{arr.shape[0]}</BAND_RASTER_HEIGHT>",
              f"            <DATA_TYPE>{dtype}</DATA_TYPE>",
              f"            <PHYSICAL_UNIT>{escape(unit)}</PHYSICAL_UNIT>",
              "            <SOLAR_FLUX>0.0</SOLAR_FLUX>",
              "            <BAND_WAVELEN>0.0</BAND_WAVELEN>",
              "            <BANDWIDTH>0.0</BANDWIDTH>",
              "            <SCALING_FACTOR>1.0</SCALING_FACTOR>",
              "            <SCALING_OFFSET>0.0</SCALING_OFFSET>",
              "            <LOG10_SCALED>false</LOG10_SCALED>",
              "            <NO_DATA_VALUE_USED>true</NO_DATA_VALUE_USED>",
              "            <NO_DATA_VALUE>0.0</NO_DATA_VALUE>",
              "        </Spectral_Band_Info>"]
        _envi(data_dir / f"{band}.img", band, arr, big_endian)
    x.append("    </Image_Interpretation>")
    x.append("    <Dataset_Sources>")
    _md_xml(metadata, 2, x)
    x.append("    </Dataset_Sources>")
    x.append("</Dimap_Document>")
    path = dest / f"{name}.dim"
    path.write_text("\n".join(x) + "\n", encoding="ISO-8859-1")
    return path


def dimap_from(product: SnapProduct, dest: Path, name: str | None = None,
               bands: list[str] | None = None, metadata: MetadataElement | None = None,
               big_endian: bool = True) -> Path:
    """A BEAM-DIMAP copy of an opened SNAP product (some bands, other metadata if given)."""
    chosen = {b: (product.bands[b].read(), product.bands[b].unit)
              for b in (bands or list(product.bands))}
    return write_dimap(dest, name or product.path.stem, chosen, product.tie_point_grids,
                       metadata or product.metadata, product.start, big_endian)
