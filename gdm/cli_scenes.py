"""``gdm scenes``: find and fetch scenes by area and dates (Sentinel-1, Sentinel-2, Pléiades).

Registered on the main ``gdm`` group by :mod:`gdm.cli`. Archive base URLs come from the
options or the environment (``GDM_ASF_URL``, ``GDM_STAC_URL``, ``GDM_ORBIT_URL``,
``GDM_DEM_URL``); the scene cache from ``--cache`` or ``GDM_SCENE_CACHE``.
Exit status: 0 success, 2 bad input, 1 remote or internal failure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gdm.common import guarded


def _run(func: Callable[[], Any], debug: bool) -> Any:
    from gdmio.download import RemoteError

    def job() -> Any:
        try:
            return func()
        except RemoteError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return guarded(job, debug)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--provider", "-p", type=click.Choice(["s1", "s2", "pleiades"]),
                     required=True, help="s1 (ASF), s2 (STAC API) or pleiades (registered)."),
        click.option("--aoi", required=True,
                     help="WKT, 'west,south,east,north' (degrees) or a GeoJSON file/text."),
        click.option("--start", required=True, help="First date, ISO 8601 (UTC)."),
        click.option("--end", required=True, help="Last date, inclusive."),
        click.option("--product", help="s1: SLC (default) or BURST; s2: L2A (default) or L1C."),
        click.option("--direction", type=click.Choice(["ASCENDING", "DESCENDING"],
                                                      case_sensitive=False),
                     help="s1 orbit direction."),
        click.option("--orbit", "relative_orbit", type=int, help="s1 relative orbit (track)."),
        click.option("--max-cloud", type=float, help="s2 largest cloud cover, percent."),
        click.option("--max", "max_scenes", type=int, help="Only the N most recent scenes."),
        click.option("--url", help="Archive base URL (else GDM_ASF_URL / GDM_STAC_URL)."),
        click.option("--index", type=click.Path(path_type=Path),
                     help="pleiades: index file (else GDM_PLEIADES_INDEX or in the cache)."),
        click.option("--cache", type=click.Path(path_type=Path),
                     help="Scene cache folder (else GDM_SCENE_CACHE or ~/.cache/gdm/scenes)."),
        click.option("--json", "as_json", is_flag=True, help="JSON output."),
        click.option("--debug", is_flag=True, help="Print tracebacks of internal errors."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _request(provider: str, aoi: str, start: str, end: str, product: str | None,
             direction: str | None, relative_orbit: int | None, max_cloud: float | None,
             max_scenes: int | None, **extra: Any) -> Any:
    from gdmio.providers.resolve import SceneRequest

    return SceneRequest(provider=provider, aoi=aoi, start=start, end=end, product=product,
                        flight_direction=direction, relative_orbit=relative_orbit,
                        max_cloud=max_cloud, max_scenes=max_scenes, **extra)


@click.group()
def scenes() -> None:
    """Find and fetch scenes by area and dates into the shared scene cache.

    \b
    Examples:
      gdm scenes search -p s2 --aoi 5.40,45.10,5.46,45.15 --start 2023-04-01 --end 2023-04-30
      gdm scenes fetch -p s2 --aoi aoi.geojson --start 2023-04-01 --end 2023-04-30 --bands B04
      gdm scenes search -p s1 --aoi 'POINT(5.7 45.2)' --start 2023-01-01 --end 2023-02-01 \\
          --direction ASCENDING --orbit 88
      gdm scenes register DELIVERY_FOLDER          (Pléiades DIMAP deliveries)
    Earthdata credentials (s1 downloads): GDM_EARTHDATA_TOKEN or ~/.netrc.
    """


@scenes.command("search")
@_common
def scenes_search(url: str | None, index: Path | None, cache: Path | None, as_json: bool,
                  debug: bool, **params: Any) -> None:
    """List the scenes over an AOI between two dates (nothing is downloaded)."""
    from gdmio.providers.resolve import get_provider, scene_cache_from_env, search_scenes

    def job() -> Any:
        request = _request(**params)
        sc = scene_cache_from_env(cache) if (cache or request.provider == "pleiades") \
            else None
        prov = get_provider(request.provider, base_url=url, cache=sc, index=index)
        return search_scenes(request, provider=prov)

    found = _run(job, debug)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in found], indent=2))
        return
    click.echo(f"{len(found)} scene(s)")
    for s in found:
        p = s.properties
        extra = ""
        if s.provider == "s1":
            extra = f"{p.get('flightDirection', '')[:4]:4s} track {p.get('pathNumber', '?')}"
        elif s.provider == "s2":
            extra = f"cloud {p.get('eo:cloud_cover', float('nan')):5.1f} %"
        elif s.provider == "pleiades":
            extra = f"incidence {p.get('incidence_angle', float('nan')):5.1f} deg"
        click.echo(f"{s.datetime:%Y-%m-%dT%H:%M:%SZ}  {s.id}  {extra}")


@scenes.command("fetch")
@_common
@click.option("--bands", default="B04", show_default=True,
              help="s2: comma-separated bands to fetch.")
@click.option("--no-crop", is_flag=True, help="s2: fetch whole band files, not AOI windows.")
def scenes_fetch(url: str | None, index: Path | None, cache: Path | None, as_json: bool,
                 debug: bool, bands: str, no_crop: bool, **params: Any) -> None:
    """Fetch the scenes over an AOI between two dates into the cache; print local paths."""
    from gdmio.providers.resolve import get_provider, resolve_scenes, scene_cache_from_env

    def job() -> Any:
        request = _request(**params, bands=[b.strip() for b in bands.split(",") if b.strip()],
                           crop=not no_crop)
        sc = scene_cache_from_env(cache)
        prov = get_provider(request.provider, base_url=url, cache=sc, index=index)
        return resolve_scenes(request, sc, provider=prov)

    paths = _run(job, debug)
    if as_json:
        click.echo(json.dumps([str(p) for p in paths], indent=2))
    else:
        for p in paths:
            click.echo(str(p))


@scenes.command("register")
@click.argument("delivery", type=click.Path(path_type=Path))
@click.option("--index", type=click.Path(path_type=Path),
              help="Index file (else GDM_PLEIADES_INDEX or pleiades.sqlite in the cache).")
@click.option("--cache", type=click.Path(path_type=Path), help="Scene cache folder.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def scenes_register(delivery: Path, index: Path | None, cache: Path | None,
                    debug: bool) -> None:
    """Register a Pléiades delivery folder (DIMAP + JP2/TIFF + RPC) for area searches."""
    from gdmio.providers.pleiades import PleiadesProvider
    from gdmio.providers.resolve import scene_cache_from_env

    def job() -> Any:
        root = None if index else scene_cache_from_env(cache).root
        return PleiadesProvider(index, cache_root=root).register(delivery)

    for s in _run(job, debug):
        click.echo(f"{s.datetime:%Y-%m-%dT%H:%M:%SZ}  {s.id}  "
                   f"incidence {s.properties.get('incidence_angle', float('nan')):.1f} deg")


@scenes.command("orbit")
@click.argument("scene")
@click.option("--url", help="Orbit bucket URL (else GDM_ORBIT_URL).")
@click.option("--cache", type=click.Path(path_type=Path), help="Scene cache folder.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def scenes_orbit(scene: str, url: str | None, cache: Path | None, debug: bool) -> None:
    """Fetch the precise (else restituted) orbit file of a Sentinel-1 SCENE name."""
    from gdmio.providers.orbits import OrbitClient
    from gdmio.providers.resolve import scene_cache_from_env

    click.echo(str(_run(lambda: OrbitClient(url).fetch(scene, scene_cache_from_env(cache)),
                        debug)))


@scenes.command("dem")
@click.option("--aoi", required=True, help="WKT, 'west,south,east,north' or GeoJSON.")
@click.option("--url", help="GLO-30 bucket URL (else GDM_DEM_URL).")
@click.option("--margin", type=float, default=0.01, show_default=True,
              help="Extra border, degrees.")
@click.option("--cache", type=click.Path(path_type=Path), help="Scene cache folder.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def scenes_dem(aoi: str, url: str | None, margin: float, cache: Path | None,
               debug: bool) -> None:
    """Mosaic and crop Copernicus GLO-30 DEM tiles over an AOI; print the GeoTIFF path."""
    from gdmio.providers.aoi import parse_aoi
    from gdmio.providers.dem import DemClient
    from gdmio.providers.resolve import scene_cache_from_env

    click.echo(str(_run(lambda: DemClient(url).fetch(parse_aoi(aoi),
                                                     scene_cache_from_env(cache), margin),
                        debug)))
