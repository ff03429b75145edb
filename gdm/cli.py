"""The ``gdm`` command line.

Exit status: 0 on success, 2 on bad input (one line on stderr naming the problem),
1 on an internal failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gdm.common import ProgressBar, config_option, guarded
from gdm_opt.config import OptConfig


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="gdm-service")
def main() -> None:
    """Ground-deformation processing: optical correlation, InSAR, stereo DSMs, campaigns.

    \b
    Start here:
      gdm opt demo --out demo-output        simulate a fault, measure it, show products
      gdm opt simulate --case fault --out sim
      gdm opt run sim/S2SIM_*.tif --out products --preset etq
    Every command has --help.
    """


@main.group()
def opt() -> None:
    """GDM-OPT: displacement from optical images (Sentinel-2, any GeoTIFF/JP2) by correlation.

    \b
    Conventions: metres, East and North positive, displacement = position in the later
    image minus position in the earlier one. Products (fixed names): east.tif, north.tif,
    magnitude.tif, score.tif, and for 3+ dates timeseries_east.tif, timeseries_north.tif,
    velocity_east.tif, velocity_north.tif (m/yr), residual.tif; quicklooks (*.png),
    report.json and item.json (STAC).
    """


@opt.command("run")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output folder (created; products appear only when the job succeeds).")
@config_option(OptConfig, "preset", "--preset", "-p")
@config_option(OptConfig, "window", help="Correlation window in pixels (even). Preset default.")
@config_option(OptConfig, "step", help="Distance between windows in pixels. Preset default.")
@config_option(OptConfig, "search")
@config_option(OptConfig, "method")
@config_option(OptConfig, "min_score")
@config_option(OptConfig, "stable")
@config_option(OptConfig, "subpixel")
@config_option(OptConfig, "presmooth")
@config_option(OptConfig, "match_taper")
@config_option(OptConfig, "deform", "--deform/--no-deform", default=None)
@config_option(OptConfig, "artefacts")
@config_option(OptConfig, "track_angle")
@config_option(OptConfig, "scl_mask", "--scl-mask/--no-scl-mask")
@config_option(OptConfig, "pairs")
@config_option(OptConfig, "max_span_days")
@config_option(OptConfig, "band")
@config_option(OptConfig, "resolution")
@config_option(OptConfig, "crs")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def opt_run(images: tuple[Path, ...], out: Path, preset: str, window: int | None,
            step: int | None, search: int | None, method: str | None, min_score: float | None,
            stable: str | None, subpixel: str | None, presmooth: float | None,
            match_taper: float | None, deform: bool | None, artefacts: str | None,
            track_angle: float | None, scl_mask: bool, pairs: str,
            max_span_days: float | None, band: str, resolution: float | None, crs: str | None,
            quiet: bool, debug: bool) -> None:
    """Correlate IMAGES (2 or more dates of one area) and write products into --out.

    \b
    Example:
      gdm opt run before.tif after.tif --out quake --preset etq
      gdm opt run S2*.SAFE --out slide --preset slide --window 64 --step 16
      gdm opt run S2*.SAFE --out quake --preset etq --stable mask.tif --artefacts all
    """
    from gdm_opt.pipeline import run

    def job() -> Any:
        cfg = OptConfig(images=list(images), out=out, preset=preset, window=window, step=step,
                        search=search, method=method, min_score=min_score, stable=stable,
                        subpixel=subpixel, presmooth=presmooth, match_taper=match_taper,
                        deform=deform, artefacts=artefacts, track_angle=track_angle,
                        scl_mask=scl_mask, pairs=pairs, max_span_days=max_span_days, band=band,
                        resolution=resolution, crs=crs)
        bar = ProgressBar(not quiet, "gdm-opt")
        try:
            return run(cfg, progress=bar)
        finally:
            bar.close()

    outputs = guarded(job, debug)
    click.echo(f"products in {outputs.out_dir}")
    for p in outputs.all_paths():
        click.echo(f"  {p}")


@opt.command("simulate")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Folder for the simulated images and truth.")
@click.option("--case", type=click.Choice(["fault", "landslide", "glacier", "zero"]),
              default="fault", show_default=True, help="Displacement field.")
@click.option("--size", type=int, default=1024, show_default=True, help="Image side, pixels.")
@click.option("--dates", type=int, default=2, show_default=True, help="Number of dates.")
@click.option("--interval-days", type=int, default=60, show_default=True)
@click.option("--amplitude", type=float, default=2.0, show_default=True,
              help="Largest displacement at the last date, pixels.")
@click.option("--snr", type=float, default=30.0, show_default=True, help="Noise level, dB.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jitter", "jitter_px", type=float, default=0.0, show_default=True,
              help="Push-broom artefacts (not in the truth): along-track jitter amplitude of "
              "each date, row component (the column component is half), pixels.")
@click.option("--jitter-period", "jitter_period_px", type=float, default=200.0,
              show_default=True, help="Period of the jitter along the track, pixels.")
@click.option("--detectors", type=int, default=1, show_default=True,
              help="Detector strips across the image (1: no step).")
@click.option("--detector-step", "detector_step_px", type=float, default=0.0,
              show_default=True, help="Each date's detector offsets are drawn in +-step "
              "per component, pixels.")
@click.option("--track-angle", "track_angle_deg", type=float, default=0.0, show_default=True,
              help="Track angle from the columns, degrees clockwise.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def opt_simulate(out: Path, case: str, size: int, dates: int, interval_days: int,
                 amplitude: float, snr: float, seed: int, jitter_px: float,
                 jitter_period_px: float, detectors: int, detector_step_px: float,
                 track_angle_deg: float, debug: bool) -> None:
    """Simulate Sentinel-2-like images warped by a known displacement field, with truth.

    \b
    Example (push-broom artefacts in the images, not in the truth):
      gdm opt simulate --case landslide --size 384 --jitter 0.25 --jitter-period 160 \\
          --detectors 3 --detector-step 0.15 --out sim
    """
    from simulators.opt import SimulateConfig, simulate

    def job() -> Any:
        cfg = SimulateConfig(case=case, size=size, dates=dates, interval_days=interval_days,
                             amplitude_px=amplitude, snr_db=snr, seed=seed, jitter_px=jitter_px,
                             jitter_period_px=jitter_period_px, detectors=detectors,
                             detector_step_px=detector_step_px,
                             track_angle_deg=track_angle_deg)
        return simulate(cfg, out)

    sim = guarded(job, debug)
    click.echo(f"simulated {len(sim.images)} images in {out}")
    for p in sim.images:
        click.echo(f"  {p}")
    click.echo(f"  truth: {sim.truth_east}, {sim.truth_north}, {sim.truth_json}")


@opt.command("presets")
def opt_presets() -> None:
    """List the parameter presets."""
    from gdm_opt.config import PRESETS

    for name, p in PRESETS.items():
        click.echo(f"{name:6s} {p.description}")
        click.echo(f"       window={p.window} step={p.step} search={p.search} "
                   f"method={p.method} min_score={p.min_score} stable={p.stable} "
                   f"subpixel={p.subpixel} presmooth={p.presmooth} "
                   f"match_taper={p.match_taper} deform={p.deform} artefacts={p.artefacts}")


@opt.command("demo")
@click.option("--out", "-o", default=Path("demo-output"), type=click.Path(path_type=Path),
              show_default=True, help="Folder for inputs and products.")
@click.option("--size", type=int, default=1024, show_default=True, help="Image side, pixels.")
@click.option("--dates", type=int, default=3, show_default=True, help="Number of dates.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
def opt_demo(out: Path, size: int, dates: int, quiet: bool, debug: bool) -> None:
    """Simulate a fault over several dates, run GDM-OPT on it and compare with the truth."""
    from gdm_opt.demo import demo

    def job() -> str:
        bar = ProgressBar(not quiet, "gdm-opt")
        try:
            return demo(out, size=size, dates=dates, progress=bar)
        finally:
            bar.close()

    click.echo(guarded(job, debug))


def _register_service_commands() -> None:
    from gdm.cli_service import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_service_commands()


from gdm.cli_scenes import scenes  # noqa: E402  (after main is defined)

main.add_command(scenes)

from gdm.cli_sar import sar  # noqa: E402

main.add_command(sar)

from gdm.cli_activate import activate, activation  # noqa: E402

main.add_command(activate)
main.add_command(activation)

from gdm.cli_campaign import campaign  # noqa: E402

main.add_command(campaign)

from gdm.cli_dsm import dsm  # noqa: E402

main.add_command(dsm)


from gdm.cli_ts import sar_timeseries, ts  # noqa: E402

sar.add_command(sar_timeseries)
main.add_command(ts)


if __name__ == "__main__":  # pragma: no cover
    main()
