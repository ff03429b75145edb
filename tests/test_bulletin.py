"""Bulletin maps and PDF: AOI outline, lat/lon graticule, location inset with Natural Earth
borders, robust colour limits, wrapped text on as many pages as needed, no server paths."""

from __future__ import annotations

import datetime as dt
import math
from types import SimpleNamespace

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from shapely.geometry import box

from gdmio.borders import border_lines, countries, countries_in, country_at
from gdmio.messages import public_message
from workflows.activation.bulletin import _graticule, pdf_pages, render_map

UTM37 = CRS.from_epsg(32637)


def test_natural_earth_borders_are_bundled_and_decoded():
    names = {n for n, _ in countries()}
    assert len(names) > 230 and {"France", "Italy", "Turkey", "Syria"} <= names
    assert country_at(2.35, 48.85) == "France"  # Paris
    assert country_at(12.50, 41.90) == "Italy"  # Rome
    assert country_at(36.94, 37.58) == "Turkey"  # Kahramanmaras
    assert country_at(-30.0, 40.0) is None  # the Atlantic
    assert countries_in((36.5, 36.0, 37.5, 37.6)) == ["Syria", "Turkey"]
    lines = border_lines((36.0, 36.0, 38.0, 37.0))
    assert lines and all(ln.shape[1] == 2 for ln in lines)
    # the Turkey-Syria border crosses 37.5 E near 36.7 N (south of Kilis)
    near = [ln for ln in lines if (np.abs(ln[:, 0] - 37.5) < 0.05).any()]
    lat_at = [float(np.interp(37.5, *ln[np.argsort(ln[:, 0])].T)) for ln in near]
    assert any(abs(v - 36.7) < 0.1 for v in lat_at), lat_at


def _utm_grid(lon=36.9, lat=37.5, size=300, pixel=100.0):
    xs, ys = warp_transform("EPSG:4326", UTM37, [lon], [lat])
    return from_origin(xs[0] - size * pixel / 2, ys[0] + size * pixel / 2, pixel, pixel)


def test_graticule_ticks_are_the_longitudes_and_latitudes_of_the_map_edges():
    t = _utm_grid()
    left, top = t.c, t.f
    right, bottom = left + 300 * 100.0, top - 300 * 100.0
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _graticule(ax, UTM37, (left, right, bottom, top))
    xt, xl = ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()]
    yt, yl = ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()]
    assert 2 <= len(xt) <= 6 and 2 <= len(yt) <= 6
    for x, label in zip(xt, xl, strict=True):
        lons, _ = warp_transform(UTM37, "EPSG:4326", [x], [bottom])
        assert label.endswith("E") and abs(lons[0] - float(label[:-2])) < 1e-3, (label, lons)
    for y, label in zip(yt, yl, strict=True):
        _, lats = warp_transform(UTM37, "EPSG:4326", [left], [y])
        assert label.endswith("N") and abs(lats[0] - float(label[:-2])) < 1e-3, (label, lats)
    assert len(ax.lines) >= len(xt) + len(yt)


def test_map_has_aoi_outline_inset_and_unsaturated_colours(tmp_path):
    t = _utm_grid()
    yy, xx = np.mgrid[:300, :300]
    disp = 3.0 * np.exp(-((xx - 150) ** 2 + (yy - 150) ** 2) / 60.0)  # 3 m, small
    aoi = box(36.85, 37.46, 36.95, 37.54)
    png = render_map(disp, t, UTM37, tmp_path / "map.png", title="t", subtitle="s",
                     cmap="viridis", units="m", vmin=0.0, aoi=aoi)
    img = imread(png)[..., :3]
    h, w = img.shape[:2]
    red = np.all(np.abs(img - np.array([0xC0, 0x39, 0x2B]) / 255) < 0.04, axis=-1)
    main, inset = red[:, : int(0.69 * w)], red[: int(0.4 * h), int(0.76 * w):]
    assert main.sum() > 200  # the AOI outline on the map
    assert inset.sum() > 5  # and the AOI on the location inset
    land = np.all(np.abs(img - np.array([0xF3, 0xEF, 0xE4]) / 255) < 0.02, axis=-1)
    sea = np.all(np.abs(img - np.array([0xD7, 0xE8, 0xF5]) / 255) < 0.02, axis=-1)
    assert land[: int(0.4 * h), int(0.76 * w):].sum() > 500  # Turkey, Syria...
    assert sea[: int(0.4 * h), int(0.76 * w):].sum() > 100  # ... and the Mediterranean
    # the 3 m peak is yellow (top of viridis), not clipped at a percentile of the flat rest
    centre = img[int(0.09 * h + 0.4 * h):int(0.09 * h + 0.5 * h), :int(0.69 * w)]
    yellow = np.all(np.abs(centre - np.array([0.99, 0.91, 0.14])) < 0.08, axis=-1)
    assert 0 < yellow.sum() < 400


def _ctx(n_log=160):
    at = dt.datetime(2023, 2, 6, 1, 30)
    log = [{"at": (at + dt.timedelta(minutes=k)).isoformat(), "who": "op",
            "action": f"step {k:03d}",
            "detail": f"job {k} read /srv/gdm/products/abc{k}/products/stage/east_{k}.tif "
                      + "with a long explanation " * 6} for k in range(n_log)]
    act = SimpleNamespace(title="Kahramanmaras " + "very long title " * 3, hazard="earthquake",
                          event_date="2023-02-06T01:17:00Z", status="complete", id="a" * 36,
                          created_by="op", aoi="POLYGON((" + ", ".join(
                              f"{36.5 + k / 100:.5f} {37.0 + k / 200:.5f}" for k in range(40))
                          + "))", log=log)
    products = [{"title": "Horizontal displacement", "dates": "2023-01-30 → 2023-02-09",
                 "map_file": None, "jobs": [{"process": "gdm-opt", "role": "opt",
                                             "job_id": "j1", "status": "failed",
                                             "message": "cannot read /work/x/y/z/e.tif: "
                                             + "bad " * 60}],
                 "scenes": [{"side": "pre", "id": "S2A_X", "datetime": "2023-01-30"}],
                 "parameters": {f"p{k}": "v" * 12 for k in range(30)}}]
    return {"a": act, "eff": {"sensors": ["s2", "s1"], "pre_days": 90, "post_days": 30,
                              "max_cloud": 20.0},
            "products": products, "unusable": [{"sensor": "s1", "reason": "no pair " * 40}],
            "created": "2023-02-06 01:30:00", "updated": "2023-02-06 04:00:00"}


def test_pdf_wraps_every_line_keeps_the_whole_log_and_hides_paths(tmp_path):
    ctx = _ctx()
    pages = pdf_pages(ctx, tmp_path)
    assert len(pages) >= 3
    texts = []
    for fig in pages:
        renderer = fig.canvas.get_renderer()
        fw, fh = fig.bbox.width, fig.bbox.height
        for t in fig.texts:
            bb = t.get_window_extent(renderer)
            assert bb.x0 >= 0 and bb.x1 <= fw and bb.y0 >= 0 and bb.y1 <= fh, t.get_text()
            texts.append(t.get_text())
    joined = "\n".join(texts)
    steps = [int(s[5:8]) for s in texts if s[19:].lstrip().startswith("op  step ")
             for s in [s[s.index("step "):]]]
    assert steps == list(range(160))  # every entry, oldest first, none dropped
    assert "/srv/" not in joined and "/work/" not in joined
    assert "east_0.tif" in joined and "e.tif" in joined
    assert "p29=" in joined  # long parameter lists are wrapped, not cut


def test_public_message_keeps_file_names_and_urls():
    assert public_message("cannot read /work/a/b/c.tif: x") == "cannot read c.tif: x"
    assert public_message("see https://h/a/b.tif") == "see https://h/a/b.tif"
    assert public_message(None) == "" and public_message("1/2 m/yr") == "1/2 m/yr"
    assert math.isfinite(len(public_message("x" * 10)))


