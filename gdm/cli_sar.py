"""``gdm sar``: the GDM-SAR commands (run a stack, simulate one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gdm.cli_corrections import correction_kwargs, correction_options
from gdm.common import ProgressBar, config_option, guarded
from gdm_sar.config import SarConfig

__all__ = ["sar"]


@click.group()
def sar() -> None:
    """GDM-SAR: InSAR time series and LOS velocity from an SLC stack or Sentinel-1 SAFEs.

    \b
    Input (fixed): a folder with one CFloat32 GeoTIFF per date, YYYYMMDD in the name,
    metadata ACQUISITION_DATE, WAVELENGTH, PERPENDICULAR_BASELINE, INCIDENCE_ANGLE,
    SLANT_RANGE, HEADING. Conventions: LOS metres, positive towards the satellite.
    Products (fixed names): velocity.tif (m/yr), timeseries.tif (m, one band per date),
    velocity_std.tif, temporal_coherence.tif, interferograms/YYYYMMDD_YYYYMMDD/
    {wrapped,unwrapped,coherence,conncomp}.tif, quicklooks, report.json, item.json.
    Sentinel-1 IW SLC products (a folder of *.SAFE folders or S1*.zip) are ingested
    first (bursts covering --aoi, orbits, TOPS coregistration with ESD, stitching) into
    OUT/stack; products are then geocoded to UTM in OUT/geocoded/. A folder of
    SNAP-coregistered products (BEAM-DIMAP *.dim + *.data/, ZNAP *.znap or *.znap.zip)
    is imported into OUT/stack (dates, wavelength, geometry, baselines and per-pixel
    lat/lon from SNAP's metadata) and geocoded with SNAP's lat/lon.
    \b
    Try:
      gdm sar simulate sim --dates 24 --size 384
      gdm sar run sim/stack --out products
      gdm sar simulate-safe s1sim
      gdm sar run s1sim/safe --out s1products --orbits s1sim/orbits --dem s1sim/dem.tif
    """


@sar.command("run")
@click.argument("stack_dir", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder (created; products appear only when the job succeeds).")
@config_option(SarConfig, "network")
@config_option(SarConfig, "neighbours", "--neighbours", "-k")
@config_option(SarConfig, "max_days")
@config_option(SarConfig, "max_bperp")
@click.option("--looks", nargs=2, type=int, default=(2, 2), show_default=True,
              metavar="AZIMUTH RANGE", help="Multilooking factors.")
@config_option(SarConfig, "series_looks")
@config_option(SarConfig, "filter_alpha", "--alpha")
@config_option(SarConfig, "unwrapper")
@config_option(SarConfig, "min_coherence")
@click.option("--no-dem-error", is_flag=True, help="Do not estimate a DEM-error term.")
@click.option("--reference", nargs=2, type=int, metavar="ROW COL",
              help="Reference pixel on the multilooked grid (default: automatic).")
@config_option(SarConfig, "block_mb")
@click.option("--aoi", nargs=4, type=float, metavar="W S E N",
              help="SAFE input: keep the bursts covering this lon/lat box (degrees).")
@click.option("--orbits", type=click.Path(path_type=Path),
              help="SAFE input: folder of EOF orbit files (precise, else restituted).")
@click.option("--orbit-source", type=click.Choice(["auto", "precise", "annotation"]),
              default="auto", show_default=True,
              help="SAFE input: 'precise' requires an EOF for every date; 'auto' falls back "
              "to the annotation state vectors.")
@click.option("--dem", type=click.Path(path_type=Path),
              help="SAFE input: DEM GeoTIFF (EPSG:4326, ellipsoidal heights); default "
              "the ellipsoid.")
@click.option("--swath", type=click.Choice(["IW1", "IW2", "IW3", "all"]),
              help="SAFE input: subswath, or 'all' (the three merged: a whole frame); "
              "default: the one covering most of the AOI.")
@click.option("--polarisation", type=click.Choice(["VV", "HH", "VH", "HV"]),
              help="SAFE or SNAP input: polarisation (default VV, else HH).")
@click.option("--no-esd", is_flag=True, help="SAFE input: skip enhanced spectral diversity.")
@click.option("--geocode/--no-geocode", default=True, show_default=True,
              help="Geocode velocity, time series and coherence onto UTM (COGs in "
              "OUT/geocoded/) when the stack has a radar geometry (SAFE or SNAP input).")
@config_option(SarConfig, "min_temporal_coherence")
@config_option(SarConfig, "min_mean_coherence")
@correction_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_run(stack_dir: Path, out: Path, network: str, neighbours: int, max_days: float | None,
            max_bperp: float | None, looks: tuple[int, int], series_looks: int,
            filter_alpha: float, unwrapper: str,
            min_coherence: float, no_dem_error: bool, reference: tuple[int, int] | None,
            block_mb: int, aoi: tuple[float, float, float, float] | None,
            orbits: Path | None, orbit_source: str, dem: Path | None, swath: str | None,
            polarisation: str | None, no_esd: bool, geocode: bool,
            min_temporal_coherence: float, min_mean_coherence: float, quiet: bool,
            debug: bool, **corrections: Any) -> None:
    """Interferograms, unwrapping, SBAS time series and velocity of INPUT.

    \b
    INPUT is a coregistered stack folder, or a folder of Sentinel-1 IW SLC products
    (*.SAFE folders or S1*.zip, one per date, one track): those are first ingested
    (burst selection, orbits, TOPS coregistration with ESD, stitching) into OUT/stack;
    or a folder of SNAP-coregistered products (*.dim, *.znap, *.znap.zip), imported
    into OUT/stack.
    \b
    Examples:
      gdm sar run stack/ --out products --network nearest -k 4 --looks 4 16
      gdm sar run safes/ --out products --orbits eof/ --dem dem.tif --aoi 5.1 45.2 5.3 45.4
    """
    from gdm_sar.pipeline import run

    fields = correction_kwargs(corrections)

    def job():
        from gdm_sar.snap import is_snap_folder
        from gdmcore import InputError
        from insar.ingest import IngestConfig, ingest, is_safe_folder

        stack = stack_dir
        if is_safe_folder(stack_dir):
            stack = _ingest_once(IngestConfig(
                safe=stack_dir, out=out / "stack", orbits=orbits, orbit_source=orbit_source,
                dem=dem, aoi=aoi or None, swath=swath, polarisation=polarisation,
                esd=not no_esd), ingest, quiet)
        elif aoi or orbits or dem:
            raise InputError("--aoi, --orbits and --dem apply to SAFE inputs only; "
                             f"{stack_dir} holds no *.SAFE folder or S1*.zip")
        elif is_snap_folder(stack_dir):
            stack = _import_snap_once(stack_dir, out / "stack", polarisation, block_mb, quiet)
        cfg = SarConfig(stack=stack, out=out, network=network, neighbours=neighbours,
                        max_days=max_days, max_bperp=max_bperp, azimuth_looks=looks[0],
                        range_looks=looks[1], series_looks=series_looks,
                        filter_alpha=filter_alpha, unwrapper=unwrapper,
                        min_coherence=min_coherence, dem_error=not no_dem_error,
                        reference=reference or None, block_mb=block_mb,
                        min_temporal_coherence=min_temporal_coherence,
                        min_mean_coherence=min_mean_coherence, **fields)
        bar = ProgressBar(not quiet, "gdm sar")
        try:
            result = run(cfg, progress=bar)
        finally:
            bar.close()
        geocoded = []
        if geocode and (Path(stack) / "geometry.json").is_file():
            from insar.geocode import geocode_products

            geocoded = geocode_products(result.out_dir, stack, Path(out) / "geocoded")
        elif geocode and (Path(stack) / "snap_geometry.npz").is_file():
            from gdm_sar.snap import geocode_snap_products

            geocoded = geocode_snap_products(result.out_dir, stack, Path(out) / "geocoded")
        return result, geocoded

    outputs, geocoded = guarded(job, debug)
    click.echo(f"products in {outputs.out_dir}: velocity.tif, timeseries.tif, "
               f"velocity_std.tif, temporal_coherence.tif, {len(outputs.interferograms)} "
               "interferograms, quicklooks, item.json"
               + (f"; {len(geocoded)} geocoded COG(s) in geocoded/" if geocoded else ""))


def _import_snap_once(folder: Path, out: Path, polarisation: str | None, block_mb: int,
                      quiet: bool) -> Path:
    """Import SNAP products into ``out`` unless the same products are already there."""
    from gdm_sar.snap import SnapImportConfig, import_snap, snap_imported

    if snap_imported(folder, out):
        return out
    bar = ProgressBar(not quiet, "import")
    try:
        return import_snap(SnapImportConfig(folder=folder, out=out, polarisation=polarisation,
                                            block_mb=block_mb), progress=bar)
    finally:
        bar.close()


def _ingest_once(cfg, ingest, quiet: bool) -> Path:
    """Ingest SAFE products into ``cfg.out`` unless the same products are already there."""
    from insar.ingest import ingested

    if ingested(cfg.safe, cfg.out):
        return Path(cfg.out)
    bar = ProgressBar(not quiet, "ingest")
    try:
        return ingest(cfg, progress=bar).stack_dir
    finally:
        bar.close()


@sar.command("simulate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--dates", type=int, default=24, show_default=True, help="Acquisitions.")
@click.option("--size", type=int, default=384, show_default=True,
              help="Rows and columns of each SLC.")
@click.option("--interval-days", type=int, default=12, show_default=True,
              help="Days between acquisitions.")
@click.option("--deformation", type=click.Choice(["mogi+fault", "mogi", "fault", "none"]),
              default="mogi+fault", show_default=True, help="Deformation sources.")
@click.option("--atmosphere-mm", type=float, default=1.5, show_default=True,
              help="Spatial standard deviation of each date's turbulent delay (mm).")
@click.option("--dem-error-m", type=float, default=10.0, show_default=True,
              help="Standard deviation of the DEM error (m).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--topography-m", type=float, default=0.0, show_default=True,
              help="Relief of the terrain (m); heights go to OUT/stack/geometry.npz.")
@click.option("--stratified", is_flag=True,
              help="Add a stratified troposphere (layered atmosphere changing with the "
              "season and the weather, integrated from every pixel's height).")
@click.option("--weather-files", is_flag=True,
              help="With --stratified: also write ERA5 pressure-level NetCDF (OUT/era5) and "
              "GACOS ZTD grids (OUT/gacos) of every date.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_simulate(out: Path, dates: int, size: int, interval_days: int, deformation: str,
                 atmosphere_mm: float, dem_error_m: float, seed: int, topography_m: float,
                 stratified: bool, weather_files: bool, debug: bool) -> None:
    """Write a simulated SLC stack (OUT/stack) and its truth (OUT/truth).

    \b
    Deformation (Mogi source, creeping fault) grows linearly in time; each date adds a
    turbulent atmosphere, a DEM-error term through its perpendicular baseline, and
    speckle that decorrelates with time (lower coherence in one patch). Truth: LOS
    velocity (m/yr), displacement series (m), DEM error (m), stable mask.
    """
    from simulators.sar import SimulateSarConfig, simulate

    sim = guarded(lambda: simulate(SimulateSarConfig(
        out=out, dates=dates, size=size, interval_days=interval_days,
        deformation=deformation, atmosphere_m=atmosphere_mm / 1000,
        dem_error_m=dem_error_m, seed=seed, topography_m=topography_m, stratified=stratified,
        weather_files=weather_files)), debug)
    click.echo(f"stack in {sim.stack_dir}, truth in {sim.truth_dir}")


@sar.command("simulate-safe")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--dates", type=int, default=6, show_default=True, help="Acquisitions.")
@click.option("--bursts", type=int, default=3, show_default=True, help="Bursts per product.")
@click.option("--samples", type=int, default=256, show_default=True, help="Range samples.")
@click.option("--velocity-mm", type=float, default=30.0, show_default=True,
              help="Peak LOS velocity of the deformation bump (mm/yr).")
@click.option("--timing-error-px", type=float, default=0.04, show_default=True,
              help="Azimuth timing error of each secondary annotation (lines; ESD finds it).")
@click.option("--zip", "as_zip", is_flag=True, help="Write zips instead of SAFE folders.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_simulate_safe(out: Path, dates: int, bursts: int, samples: int, velocity_mm: float,
                      timing_error_px: float, as_zip: bool, seed: int, debug: bool) -> None:
    """Write simulated Sentinel-1 IW SLC products (OUT/safe), orbits, DEM and truth.

    \b
    Small but structurally faithful SAFE products (manifest, annotation, CInt16 bursts)
    from a known orbit geometry, DEM and LOS velocity bump. Then:
      gdm sar run OUT/safe --out products --orbits OUT/orbits --dem OUT/dem.tif
    """
    from simulators.sar_safe import SimulateSafeConfig, simulate_safe

    sim = guarded(lambda: simulate_safe(SimulateSafeConfig(
        out=out, dates=dates, bursts=bursts, samples=samples, velocity=velocity_mm / 1000,
        timing_error_px=timing_error_px, zip=as_zip, seed=seed)), debug)
    click.echo(f"{len(sim.products)} products in {sim.safe_dir}, orbits in {sim.orbit_dir}, "
               f"DEM {sim.dem}, truth in {sim.safe_dir.parent / 'truth.json'}")
