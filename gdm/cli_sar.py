"""``gdm sar``: the GDM-SAR commands (run a stack, simulate one)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["sar"]


@click.group()
def sar() -> None:
    """GDM-SAR: InSAR time series and LOS velocity from a coregistered SLC stack.

    \b
    Input (fixed): a folder with one CFloat32 GeoTIFF per date, YYYYMMDD in the name,
    metadata ACQUISITION_DATE, WAVELENGTH, PERPENDICULAR_BASELINE, INCIDENCE_ANGLE,
    SLANT_RANGE, HEADING. Conventions: LOS metres, positive towards the satellite.
    Products (fixed names): velocity.tif (m/yr), timeseries.tif (m, one band per date),
    velocity_std.tif, temporal_coherence.tif, interferograms/YYYYMMDD_YYYYMMDD/
    {wrapped,unwrapped,coherence,conncomp}.tif, quicklooks, report.json, item.json.
    \b
    Try:
      gdm sar simulate sim --dates 24 --size 384
      gdm sar run sim/stack --out products
    """


@sar.command("run")
@click.argument("stack_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder (created; products appear only when the job succeeds).")
@click.option("--network", type=click.Choice(["nearest", "all", "span"]), default="nearest",
              show_default=True, help="Pair selection (nearest = k next dates).")
@click.option("--neighbours", "-k", type=int, default=3, show_default=True,
              help="Successors paired with each date (--network nearest).")
@click.option("--max-days", type=float, help="Longest temporal baseline (days).")
@click.option("--max-bperp", type=float, help="Largest perpendicular baseline (m).")
@click.option("--looks", nargs=2, type=int, default=(2, 2), show_default=True,
              metavar="AZIMUTH RANGE", help="Multilooking factors.")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="Goldstein filter strength (0 = off).")
@click.option("--unwrapper", type=click.Choice(["mcf", "snaphu"]), default="mcf",
              show_default=True, help="Phase unwrapper.")
@click.option("--min-coherence", type=float, default=0.3, show_default=True,
              help="Pixels of a pair below this coherence are left out.")
@click.option("--no-dem-error", is_flag=True, help="Do not estimate a DEM-error term.")
@click.option("--reference", nargs=2, type=int, metavar="ROW COL",
              help="Reference pixel on the multilooked grid (default: automatic).")
@click.option("--block-mb", type=int, default=256, show_default=True,
              help="Memory budget of one block of rows (MiB).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_run(stack_dir: Path, out: Path, network: str, neighbours: int, max_days: float | None,
            max_bperp: float | None, looks: tuple[int, int], alpha: float, unwrapper: str,
            min_coherence: float, no_dem_error: bool, reference: tuple[int, int] | None,
            block_mb: int, quiet: bool, debug: bool) -> None:
    """Interferograms, unwrapping, SBAS time series and velocity of STACK_DIR.

    \b
    Example:
      gdm sar run stack/ --out products --network nearest -k 4 --looks 4 16
    """
    from gdm.cli import _guarded, _Progress
    from gdm_sar.config import SarConfig
    from gdm_sar.pipeline import run

    def job():
        cfg = SarConfig(stack=stack_dir, out=out, network=network, neighbours=neighbours,
                        max_days=max_days, max_bperp=max_bperp, azimuth_looks=looks[0],
                        range_looks=looks[1], filter_alpha=alpha, unwrapper=unwrapper,
                        min_coherence=min_coherence, dem_error=not no_dem_error,
                        reference=reference or None, block_mb=block_mb)
        bar = _Progress(not quiet, "gdm sar")
        try:
            return run(cfg, progress=bar)
        finally:
            bar.close()

    outputs = _guarded(job, debug)
    click.echo(f"products in {outputs.out_dir}: velocity.tif, timeseries.tif, "
               f"velocity_std.tif, temporal_coherence.tif, {len(outputs.interferograms)} "
               "interferograms, quicklooks, item.json")


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
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_simulate(out: Path, dates: int, size: int, interval_days: int, deformation: str,
                 atmosphere_mm: float, dem_error_m: float, seed: int, debug: bool) -> None:
    """Write a simulated SLC stack (OUT/stack) and its truth (OUT/truth).

    \b
    Deformation (Mogi source, creeping fault) grows linearly in time; each date adds a
    turbulent atmosphere, a DEM-error term through its perpendicular baseline, and
    speckle that decorrelates with time (lower coherence in one patch). Truth: LOS
    velocity (m/yr), displacement series (m), DEM error (m), stable mask.
    """
    from gdm.cli import _guarded
    from gdm_sar.simulate import SimulateSarConfig, simulate

    sim = _guarded(lambda: simulate(SimulateSarConfig(
        out=out, dates=dates, size=size, interval_days=interval_days,
        deformation=deformation, atmosphere_m=atmosphere_mm / 1000,
        dem_error_m=dem_error_m, seed=seed)), debug)
    click.echo(f"stack in {sim.stack_dir}, truth in {sim.truth_dir}")
