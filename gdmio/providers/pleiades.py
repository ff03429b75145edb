"""Pléiades deliveries (DINAMIS, DIMAP V2 + JP2/TIFF + RPC) registered as searchable scenes.

:func:`parse_dimap` reads one ``DIM_*.XML``: dataset name, acquisition time, footprint
(``Dataset_Extent/Vertex``), viewing and incidence angles (``Located_Geometric_Values``
at the image centre), sun angles, raster size, image files and the RPC file.
:class:`PleiadesIndex` keeps registered scenes in a small SQLite file (by default
``pleiades.sqlite`` in the scene cache root, or ``$GDM_PLEIADES_INDEX``) so jobs can ask
"this area, these dates" like for the other providers. The files stay where they were
delivered; ``fetch`` only checks they are still there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import Polygon, mapping, shape

from gdmcore import InputError
from gdmio.providers import Asset, Scene, SceneQuery

__all__ = ["PleiadesIndex", "PleiadesProvider", "parse_dimap", "dimap_raster"]

_ANGLES = {
    "INCIDENCE_ANGLE": "incidence_angle",
    "INCIDENCE_ANGLE_ALONG_TRACK": "incidence_angle_along_track",
    "INCIDENCE_ANGLE_ACROSS_TRACK": "incidence_angle_across_track",
    "VIEWING_ANGLE": "viewing_angle",
    "VIEWING_ANGLE_ALONG_TRACK": "viewing_angle_along_track",
    "VIEWING_ANGLE_ACROSS_TRACK": "viewing_angle_across_track",
    "AZIMUTH_ANGLE": "azimuth_angle",
    "SUN_AZIMUTH": "sun_azimuth",
    "SUN_ELEVATION": "sun_elevation",
}


def _strip_ns(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _text(root: ET.Element, path: str) -> str | None:
    el = root.find(path)
    return el.text.strip() if el is not None and el.text and el.text.strip() else None


def _utc(text: str) -> dt.datetime:
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d.astimezone(dt.UTC)


def parse_dimap(path: str | os.PathLike[str]) -> Scene:
    """Read a DIMAP V2 ``DIM_*.XML`` as a :class:`Scene` (provider ``pleiades``).

    Raises
    ------
    InputError
        When the file is not DIMAP V2 or lacks the footprint or the acquisition time.

    """
    path = Path(path)
    try:
        root = _strip_ns(ET.parse(path).getroot())
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path.name}: not a readable DIMAP XML ({exc})") from exc
    if root.tag.lower() not in ("dimap_document", "phr_dimap_document"):
        raise InputError(f"{path.name}: not a DIMAP document (root <{root.tag}>)")
    name = _text(root, "Dataset_Identification/DATASET_NAME") or path.stem
    vertices = [(float(_text(v, "LON") or "nan"), float(_text(v, "LAT") or "nan"))
                for v in root.findall("Dataset_Content/Dataset_Extent/Vertex")]
    if len(vertices) < 3 or any(x != x or y != y for x, y in vertices):
        raise InputError(f"{path.name}: no footprint (Dataset_Extent/Vertex LON/LAT)")
    footprint = shapely.make_valid(Polygon(vertices))
    footprint = shapely.geometry.polygon.orient(footprint) if footprint.geom_type == \
        "Polygon" else footprint

    props: dict[str, Any] = {}
    centre = None
    for lgv in root.iter("Located_Geometric_Values"):
        if (_text(lgv, "LOCATION_TYPE") or "").lower() == "center" or centre is None:
            centre = lgv
    when = None
    if centre is not None:
        t = _text(centre, "TIME")
        when = _utc(t) if t else None
        for el in centre.iter():
            if el.tag in _ANGLES and el.text and el.text.strip():
                props[_ANGLES[el.tag]] = float(el.text)
    strip = root.find("Dataset_Sources/Source_Identification/Strip_Source")
    if when is None and strip is not None:
        d, t = _text(strip, "IMAGING_DATE"), _text(strip, "IMAGING_TIME")
        if d:
            when = _utc(f"{d}T{t or '00:00:00'}")
    if when is None:
        raise InputError(f"{path.name}: no acquisition time (Located_Geometric_Values/TIME "
                         "or Strip_Source/IMAGING_DATE)")
    if strip is not None:
        mission = (_text(strip, "MISSION") or "") + (_text(strip, "MISSION_INDEX") or "")
        if mission:
            props["platform"] = mission
    for key, where in (("rows", "Raster_Data/Raster_Dimensions/NROWS"),
                       ("cols", "Raster_Data/Raster_Dimensions/NCOLS"),
                       ("bands", "Raster_Data/Raster_Dimensions/NBANDS")):
        value = _text(root, where)
        if value:
            props[key] = int(value)
    for key, where in (("job_id", "Product_Information/Delivery_Identification/JOB_ID"),
                       ("spectral_processing",
                        "Processing_Information/Product_Settings/SPECTRAL_PROCESSING"),
                       ("processing_level",
                        "Processing_Information/Product_Settings/PROCESSING_LEVEL")):
        value = _text(root, where)
        if value:
            props[key] = value

    assets = {"metadata": Asset(str(path.resolve()), path.stat().st_size, None, "DIMAP")}
    for i, df in enumerate(root.iter("DATA_FILE_PATH")):
        href = df.get("href")
        if href:
            assets[f"image{i + 1}"] = Asset(str((path.parent / href).resolve()), None, None,
                                            "image")
    for comp in root.iter("Rational_Function_Model"):
        for cp in comp.iter("COMPONENT_PATH"):
            href = cp.get("href")
            if href:
                assets["rpc"] = Asset(str((path.parent / href).resolve()), None,
                                      None, "RPC")
    return Scene(name, "pleiades", when, mapping(footprint), props, assets)


def dimap_raster(path: str | os.PathLike[str]) -> tuple[str, int]:
    """What GDAL should open to read the image of a DIMAP V2 product, and its tile count.

    A full Pléiades scene is delivered as tiles (``..._R1C1.JP2``, ``..._R1C2.JP2``, ...,
    ``Data_File`` elements with ``tile_R`` / ``tile_C``). One tile: its path. Several: a
    VRT mosaic (XML text that rasterio opens as a dataset) placing each tile after the
    heights of the tiles above it and the widths of those to its left, so the image is
    read as one, window by window, without copying the tiles.

    Raises
    ------
    InputError
        When the document lists no image, a tile is missing or unreadable, or the tiles
        do not form a full grid of matching sizes.

    """
    from xml.sax.saxutils import escape

    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    try:
        root = _strip_ns(ET.parse(path).getroot())
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path.name}: not a readable DIMAP XML ({exc})") from exc
    tiles: dict[tuple[int, int], Path] = {}
    for df in root.iter("Data_File"):
        fp = df.find("DATA_FILE_PATH")
        href = fp.get("href") if fp is not None else None
        if not href:
            continue
        try:
            r, c = int(df.get("tile_R", 1)), int(df.get("tile_C", 1))
        except ValueError:
            raise InputError(f"{path.name}: bad tile index in Data_File {href}") from None
        if (r, c) in tiles:
            raise InputError(f"{path.name}: two image files for tile R{r}C{c}")
        tiles[(r, c)] = (path.parent / href).resolve()
    if not tiles:
        raise InputError(f"{path.name}: the DIMAP lists no image file")
    for f in tiles.values():
        if not f.is_file():
            raise InputError(f"{path.name}: image tile {f.name} is missing")
    if len(tiles) == 1:
        return str(next(iter(tiles.values()))), 1
    nr = max(r for r, _ in tiles)
    nc = max(c for _, c in tiles)
    if len(tiles) != nr * nc:
        raise InputError(f"{path.name}: {len(tiles)} tiles do not fill a {nr}x{nc} grid")
    size: dict[tuple[int, int], tuple[int, int, str, int]] = {}
    for key, f in tiles.items():
        try:
            with rasterio.open(f) as ds:
                size[key] = (ds.height, ds.width, ds.dtypes[0], ds.count)
        except RasterioIOError as exc:
            raise InputError(f"{path.name}: tile {f.name} is not readable "
                             f"({str(exc).splitlines()[0]})") from None
    heights = [size[(r, 1)][0] for r in range(1, nr + 1)]
    widths = [size[(1, c)][1] for c in range(1, nc + 1)]
    for (r, c), (h, w, _, _) in size.items():
        if h != heights[r - 1] or w != widths[c - 1]:
            raise InputError(f"{path.name}: tile R{r}C{c} is {w}x{h}, not "
                             f"{widths[c - 1]}x{heights[r - 1]} like its row and column")
    dtype = size[(1, 1)][2]
    vrt_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                "int32": "Int32", "float32": "Float32", "float64": "Float64"}.get(dtype)
    if vrt_type is None:
        raise InputError(f"{path.name}: unsupported pixel type {dtype}")
    y_off = [sum(heights[:i]) for i in range(nr)]
    x_off = [sum(widths[:i]) for i in range(nc)]
    sources = []
    for (r, c), f in sorted(tiles.items()):
        h, w = heights[r - 1], widths[c - 1]
        sources.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(f))}'
            f'</SourceFilename><SourceBand>1</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{x_off[c - 1]}" yOff="{y_off[r - 1]}" xSize="{w}" '
            f'ySize="{h}"/></SimpleSource>')
    vrt = (f'<VRTDataset rasterXSize="{sum(widths)}" rasterYSize="{sum(heights)}">'
           f'<VRTRasterBand dataType="{vrt_type}" band="1">{"".join(sources)}'
           "</VRTRasterBand></VRTDataset>")
    return vrt, len(tiles)


class PleiadesIndex:
    """A SQLite index of registered Pléiades scenes (safe to share between workers)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS scenes (
                id TEXT PRIMARY KEY, dim TEXT NOT NULL, datetime TEXT NOT NULL,
                west REAL, south REAL, east REAL, north REAL, scene TEXT NOT NULL)""")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    def register(self, folder: str | os.PathLike[str]) -> list[Scene]:
        """Register every ``DIM_*.XML`` under ``folder`` (again: updated, not doubled).

        Raises
        ------
        InputError
            When the folder does not exist or holds no DIMAP file.

        """
        folder = Path(folder)
        if not folder.exists():
            raise InputError(f"delivery folder {folder} does not exist")
        dims = [folder] if folder.is_file() else sorted(
            p for p in folder.rglob("*") if p.is_file() and p.name.upper().startswith("DIM_")
            and p.suffix.upper() == ".XML")
        if not dims:
            raise InputError(f"{folder}: no DIM_*.XML (DIMAP) file in this delivery")
        scenes = [parse_dimap(p) for p in dims]
        with self._db() as db:
            for s in scenes:
                w, so, e, n = shape(s.geometry).bounds
                db.execute("INSERT OR REPLACE INTO scenes VALUES (?,?,?,?,?,?,?,?)",
                           (s.id, s.assets["metadata"].href, s.datetime.isoformat(), w, so,
                            e, n, json.dumps(s.to_json())))
        return scenes

    def search(self, query: SceneQuery) -> list[Scene]:
        """Registered scenes intersecting the AOI within the dates, oldest first."""
        w, s, e, n = query.aoi.bounds
        with self._db() as db:
            rows = db.execute(
                "SELECT scene FROM scenes WHERE east >= ? AND west <= ? AND north >= ? "
                "AND south <= ? AND datetime >= ? AND datetime <= ? ORDER BY datetime, id",
                (w, e, s, n, query.start.isoformat(), query.end.isoformat())).fetchall()
        out = [_from_json(json.loads(r[0])) for r in rows]
        out = [sc for sc in out if shape(sc.geometry).intersects(query.aoi)]
        return out[-query.max_results:] if query.max_results else out

    def __len__(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM scenes").fetchone()[0])


def _from_json(d: dict[str, Any]) -> Scene:
    assets = {k: Asset(a["href"], a.get("size"), None, a.get("title", ""))
              for k, a in d["assets"].items()}
    return Scene(d["id"], d["provider"], _utc(d["datetime"]), d["geometry"], d["properties"],
                 assets)


class PleiadesProvider:
    """Search registered Pléiades deliveries; ``fetch`` returns the DIMAP file path.

    Parameters
    ----------
    index
        Index file; default ``$GDM_PLEIADES_INDEX``, else ``pleiades.sqlite`` in
        ``cache_root``.
    cache_root
        Scene cache folder (for the default index location).

    """

    name = "pleiades"

    def __init__(self, index: str | os.PathLike[str] | None = None,
                 cache_root: str | os.PathLike[str] | None = None) -> None:
        where = index or os.environ.get("GDM_PLEIADES_INDEX")
        if where is None:
            if cache_root is None:
                raise InputError("Pléiades: no index (give --index, $GDM_PLEIADES_INDEX or a "
                                 "cache folder)")
            where = Path(cache_root) / "pleiades.sqlite"
        self.index = PleiadesIndex(where)

    def register(self, folder: str | os.PathLike[str]) -> list[Scene]:
        """Register a delivery folder; see :meth:`PleiadesIndex.register`."""
        return self.index.register(folder)

    def search(self, query: SceneQuery) -> list[Scene]:
        """Registered scenes over the AOI within the dates."""
        return self.index.search(query)

    def fetch(self, scene: Scene, cache: Any = None) -> list[Path]:
        """The scene's DIMAP file (images and RPC beside it), checked to exist.

        Raises
        ------
        InputError
            When a registered file has gone.

        """
        for asset in scene.assets.values():
            if not Path(asset.href).exists():
                raise InputError(f"{scene.id}: registered file {asset.href} is missing "
                                 "(register the delivery again)")
        return [Path(scene.assets["metadata"].href)]
