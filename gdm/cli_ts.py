"""``gdm sar timeseries`` (interferograms made elsewhere) and ``gdm ts point``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import click

from gdm.cli_corrections import correction_kwargs, correction_options

__all__ = ["sar_timeseries", "ts"]


@click.command("timeseries")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="INPUT...")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder (created; products appear only when the job succeeds).")
@click.option("--wavelength", type=float, help="Radar wavelength (m) where the metadata "
              "gives none (plain GeoTIFFs, ISCE2 without its reference folder).")
@click.option("--reference", nargs=2, type=float, metavar="LON LAT",
              help="Reference point (default: coherent stable area away from the "
              "largest deformation).")
@click.option("--gnss", type=click.Path(path_type=Path),
              help="CSV of GNSS tie points lon,lat,velocity (LOS m/yr, towards the "
              "satellite positive).")
@click.option("--mask", type=click.Path(path_type=Path),
              help="GeoTIFF mask (0 = masked in the products).")
@click.option("--min-coherence", type=float, default=0.3, show_default=True,
              help="Pixels of a pair below this coherence are left out.")
@click.option("--min-temporal-coherence", type=float, default=0.7, show_default=True,
              help="Mask pixels below this temporal coherence.")
@click.option("--min-mean-coherence", type=float, default=0.5, show_default=True,
              help="Mask pixels below this mean coherence.")
@click.option("--no-dem-error", is_flag=True, help="Do not estimate a DEM-error term.")
@click.option("--no-bridge-gaps", is_flag=True,
              help="Refuse a disconnected network instead of bridging it with the weak "
              "NSBAS temporal model.")
@click.option("--block-mb", type=int, default=256, show_default=True,
              help="Memory budget of one block of rows (MiB).")
@correction_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def sar_timeseries(inputs: tuple[Path, ...], out: Path, wavelength: float | None,
                   reference: tuple[float, float] | None, gnss: Path | None,
                   mask: Path | None, min_coherence: float, min_temporal_coherence: float,
                   min_mean_coherence: float, no_dem_error: bool, no_bridge_gaps: bool,
                   block_mb: int, quiet: bool, debug: bool, **corrections: Any) -> None:
    """Time series and LOS velocity from unwrapped interferograms made elsewhere.

    \b
    INPUT: files or folders of unwrapped interferograms (and coherence) from
      ROI_PAC / NSBAS   *.unw + *.unw.rsc (+ .cor)
      GAMMA             *.unw (big-endian) or GeoTIFF, with *.slc.par/*.mli.par
                        (radar_frequency), *.dem_par, *_bperp.par / *.base_perp
      ISCE2             filt_*.unw, topsStack merged/interferograms/*/filt_fine.unw
                        with .xml/.vrt (wavelength from reference/IW*.xml)
      HyP3              product zips or folders (*_unw_phase.tif, *_corr.tif, .txt)
      LiCSAR            YYYYMMDD_YYYYMMDD.geo.unw.tif + .geo.cc.tif
      FLATSIM           CNES_InU_*.tiff + CNES_Coh_*.tiff (zips or folders)
      GDM-SAR           interferograms/YYYYMMDD_YYYYMMDD/unwrapped.tif of gdm sar run
      GeoTIFF           two dates in the name (YYYYMMDD or YYMMDD, - or _), tags
                        WAVELENGTH or --wavelength; *cc*/*coh* files are coherence
    Each format's own sign and units are honoured; products are LOS metres, positive
    towards the satellite. Products of different extents are cut to the common grid.
    \b
    Products: velocity.tif, timeseries.tif, timeseries.nc (CF-1.8), velocity_std,
    temporal_coherence, residual, misclosure, mean_coherence, dem_error,
    unwrapping_corrections, loop_errors, network_gaps, mask (bits: why a pixel is
    masked), troposphere (with --troposphere), quality/ (RMSinterfero.txt,
    RMSdate.txt, list_unw_frac.txt, dropped_pairs.txt),
    interferograms/<pair>/{los,coherence}.tif, quicklooks, network.png, report.json
    (with the dropped pairs and their reasons), item.json.
    \b
    Example:
      gdm sar timeseries hyp3_zips/ --out ts --reference -99.14 19.43
    """
    from gdm.common import ProgressBar as _Progress
    from gdm.common import guarded as _guarded
    from gdm_sar.timeseries import TimeseriesConfig, run_timeseries

    def job():
        cfg = TimeseriesConfig(
            interferograms=list(inputs), out=out, wavelength=wavelength,
            reference=reference or None, gnss=gnss, mask=mask, min_coherence=min_coherence,
            min_temporal_coherence=min_temporal_coherence,
            min_mean_coherence=min_mean_coherence, dem_error=not no_dem_error,
            bridge_gaps=not no_bridge_gaps, block_mb=block_mb,
            **correction_kwargs(corrections))
        bar = _Progress(not quiet, "gdm sar timeseries")
        try:
            return run_timeseries(cfg, progress=bar)
        finally:
            bar.close()

    result = _guarded(job, debug)
    dropped = f"; {len(result.dropped)} pair(s) dropped (see report.json)" \
        if result.dropped else ""
    click.echo(f"products in {result.out_dir}: velocity.tif, timeseries.tif, "
               f"timeseries.nc, quality layers, report.json{dropped}")


@click.group()
def ts() -> None:
    """Time-series products: read them back."""


@ts.command("point")
@click.argument("products", type=click.Path(path_type=Path))
@click.option("--lonlat", nargs=2, type=float, required=True, metavar="LON LAT",
              help="The point (WGS84 degrees).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path),
              help="Write the series to this CSV file instead of printing it.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def ts_point(products: Path, lonlat: tuple[float, float], csv_path: Path | None,
             debug: bool) -> None:
    """Print (or write) the time series of one pixel and its fitted velocity.

    PRODUCTS is a product folder (GDM-SAR, gdm sar timeseries, GDM-OPT, a FLATSIM
    frame), its timeseries.nc, or a time-series COG.
    """
    from gdm.common import guarded as _guarded
    from gdmio.pointseries import read_point_series

    ps = _guarded(lambda: read_point_series(products, *lonlat), debug)
    names = list(ps.values)
    rows = [[d.isoformat(), *(f"{ps.values[n][k]:.6f}" for n in names)]
            for k, d in enumerate(ps.dates)]
    header = ["date", *(f"{n}_{ps.units}" for n in names)]
    vel = ", ".join(f"{n} {ps.velocity[n]:.6f} {ps.units}/yr" for n in names)
    if csv_path is not None:
        def write():
            from gdmcore import InputError

            try:
                with open(csv_path, "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(header)
                    w.writerows(rows)
            except OSError as exc:
                raise InputError(f"cannot write {csv_path}: {exc.strerror or exc}") from None

        _guarded(write, debug)
        click.echo(f"{len(rows)} dates written to {csv_path}; fitted velocity: {vel}")
        return
    out = csv.writer(sys.stdout)
    click.echo(f"# {ps.source} pixel row {ps.row} col {ps.col}; fitted velocity: {vel}")
    out.writerow(header)
    out.writerows(rows)
