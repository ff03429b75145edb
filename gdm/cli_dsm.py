"""``gdm dsm``: the DSM-OPT commands (run a stereo pair/triplet, simulate one, catalogue)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from gdm.common import ProgressBar, guarded

__all__ = ["dsm"]


@click.group()
def dsm() -> None:
    """DSM-OPT: digital surface models from Pléiades stereo pairs and triplets.

    \b
    Input (fixed): 2 or 3 single-band images with an RPC camera model (GeoTIFF with RPC
    metadata, or DIMAP DIM_*.XML / JP2). No geotransform needed.
    Products (fixed names): dsm.tif (metres above the WGS84 ellipsoid, float32, UTM),
    ortho.tif, count.tif (points per cell), uncertainty.tif, dsm_hillshade.png,
    report.json, item.json (+ filled.tif with --fill-holes).
    \b
    Try:
      gdm dsm simulate sim --size 400
      gdm dsm run sim/images/view1_20240501.tif sim/images/view2_20240501.tif --out dsm
    """


@dsm.command("run")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder (created; products appear only when the job succeeds).")
@click.option("--preset", type=click.Choice(["mountain", "urban", "flat"]), default="mountain",
              show_default=True, help="Parameter preset.")
@click.option("--resolution", type=float, help="DSM cell size in metres (default: the GSD).")
@click.option("--height-range", nargs=2, type=float, metavar="MIN MAX",
              help="Surface heights above the ellipsoid (m) bounding the search.")
@click.option("--rpc", "rpcs", multiple=True, metavar="FILE",
              help="RPC file of each image, in order (repeat once per image; '-' keeps the "
              "image's own): DIMAP RPC_*.XML, OSSIM/OTB .geom, RPC00B text. A .geom beside "
              "an image is found without this.")
@click.option("--dem", type=click.Path(path_type=Path),
              help="Coarse DEM (GeoTIFF, ellipsoidal heights) bounding the search.")
@click.option("--cost", type=click.Choice(["census", "zncc"]), help="Matching cost.")
@click.option("--window", type=int, help="Matching window side (odd, 3..9).")
@click.option("--p1", type=float, help="SGM small-change penalty.")
@click.option("--p2", type=float, help="SGM large-jump penalty.")
@click.option("--fill-holes", is_flag=True, help="Fill empty cells (flagged in filled.tif).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes matching tiles in parallel (Dask).")
@click.option("--catalogue", type=click.Path(path_type=Path),
              help="STAC catalogue folder to record the DSM in.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def dsm_run(images: tuple[Path, ...], out: Path, preset: str, resolution: float | None,
            height_range: tuple[float, float] | None, rpcs: tuple[str, ...],
            dem: Path | None, cost: str | None,
            window: int | None, p1: float | None, p2: float | None, fill_holes: bool,
            workers: int,
            catalogue: Path | None, quiet: bool, debug: bool) -> None:
    """DSM of a stereo pair or triplet IMAGES (2 or 3) written into --out.

    \b
    Example:
      gdm dsm run fwd.tif nadir.tif bwd.tif --out dsm --preset urban --resolution 0.5
    """
    from gdmcore import InputError

    def job() -> Any:
        if not 2 <= len(images) <= 3:
            raise InputError(f"DSM-OPT needs 2 or 3 images (a stereo pair or triplet), "
                             f"got {len(images)}")
        from dsm_opt.config import DsmConfig
        from dsm_opt.pipeline import run

        hmin, hmax = height_range if height_range else (None, None)
        if rpcs and len(rpcs) != len(images):
            raise InputError(f"--rpc given {len(rpcs)} times for {len(images)} images: give "
                             "it once per image ('-' for an image's own RPC)")
        rpc_files = [None if r == "-" else Path(r) for r in rpcs] if rpcs else None
        cfg = DsmConfig(images=list(images), rpcs=rpc_files, out=out, preset=preset,
                        resolution=resolution,
                        height_min=hmin, height_max=hmax, dem=dem, cost=cost, window=window,
                        p1=p1, p2=p2, fill_holes=fill_holes, catalogue=catalogue,
                        workers=workers)
        bar = ProgressBar(not quiet, "gdm dsm")
        try:
            return run(cfg, progress=bar)
        finally:
            bar.close()

    outputs = guarded(job, debug)
    click.echo(f"products in {outputs.out_dir} (pair {outputs.pair[0] + 1}-"
               f"{outputs.pair[1] + 1}, B/H {outputs.bh:.2f}, EPSG:{outputs.epsg})")
    for p in outputs.all_paths():
        click.echo(f"  {p}")


@dsm.command("simulate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--size", type=int, default=400, show_default=True, help="Image side, pixels.")
@click.option("--gsd", type=float, default=0.5, show_default=True, help="Pixel size, metres.")
@click.option("--views", type=click.IntRange(2, 3), default=2, show_default=True,
              help="2 (pair) or 3 (triplet).")
@click.option("--bh", type=float, default=0.3, show_default=True,
              help="Base-to-height ratio of the outermost views.")
@click.option("--scene", type=click.Choice(["urban", "mountain", "flat"]), default="urban",
              show_default=True, help="Terrain and buildings, steep terrain, or flat ground.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def dsm_simulate(out: Path, size: int, gsd: float, views: int, bh: float, scene: str,
                 seed: int, debug: bool) -> None:
    """Render a known DSM into 2 or 3 views with RPCs (OUT/images) and its truth (OUT/truth).

    \b
    Truth: dsm.tif (heights on the UTM grid), visible.tif (one band per view: ground
    cells each view sees), meta.json (view geometry, B/H, RPC fit residuals).
    """
    from simulators.dsm import SimulateDsmConfig, simulate

    sim = guarded(lambda: simulate(SimulateDsmConfig(out=out, size=size, gsd=gsd, views=views,
                                                     bh=bh, scene=scene, seed=seed)), debug)
    click.echo(f"{len(sim.images)} images in {out / 'images'}, truth in {out / 'truth'} "
               f"(B/H {sim.bh:.2f}, EPSG:{sim.epsg})")


@dsm.group("catalogue")
def dsm_catalogue() -> None:
    """The STAC catalogue of produced DSMs."""


@dsm_catalogue.command("add")
@click.argument("root", type=click.Path(path_type=Path))
@click.argument("item", type=click.Path(path_type=Path))
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def catalogue_add(root: Path, item: Path, debug: bool) -> None:
    """Record a product's ITEM (item.json) in the catalogue at ROOT."""
    from dsm_opt.catalogue import add_item

    dest = guarded(lambda: add_item(root, item), debug)
    click.echo(f"recorded {dest}")


@dsm_catalogue.command("search")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--bbox", nargs=4, type=float, metavar="W S E N", help="Area (WGS84 degrees).")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First date (UTC).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last date (UTC, inclusive).")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def catalogue_search(root: Path, bbox: tuple[float, float, float, float] | None,
                     start: dt.datetime | None, end: dt.datetime | None, as_json: bool,
                     debug: bool) -> None:
    """List the DSMs of the catalogue at ROOT over an area and a time span."""
    from dsm_opt.catalogue import search

    items = guarded(lambda: search(root, bbox=bbox or None, start=start.date() if start
                                   else None, end=end.date() if end else None), debug)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for it in items:
        props = it.get("properties", {})
        when = props.get("datetime") or props.get("start_datetime")
        click.echo(f"{it['id']}  {when}  {it['assets']['dsm']['href']}")
    click.echo(f"{len(items)} DSM(s)")
