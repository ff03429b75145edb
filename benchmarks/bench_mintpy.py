"""gdm sar timeseries vs MintPy on real GAMMA interferograms (pyrate_cropA).

MintPy lives in its own virtual environment (it is not part of the default install):

    python3 -m venv .venv-mintpy && .venv-mintpy/bin/pip install mintpy==1.6.4
    .venv/bin/python benchmarks/bench_mintpy.py [--mintpy-python .venv-mintpy/bin/python]

Both tools get the same 30 interferograms, coherence, perpendicular baselines and
reference point. MintPy has no reader for GAMMA GeoTIFFs without ``.off`` files (its
``prep_gamma`` runs GAMMA's ``base_orbit``), so the benchmark writes the interferograms
as ROI_PAC files (``.unw``/``.cor``/``.hgt`` + ``.rsc``, read by MintPy's ``roipac``
loader) with the same metadata our GAMMA reader found, then runs ``smallbaselineApp.py``
up to the velocity (coherence-weighted network inversion, temporal-coherence mask 0.7,
DEM-error correction with a linear deformation model as ours, no date excluded from the
velocity; no tropospheric, ramp or unwrapping-error step). Printed: RMS
and median of the velocity difference on pixels valid in both, after aligning the
reference (the median difference is removed), and a PNG with both maps and their
difference (``bench-output/mintpy/velocity_vs_mintpy.png``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gdm_sar.timeseries import TimeseriesConfig, run_timeseries  # noqa: E402
from gdmio.insar import find_interferograms  # noqa: E402
from gdmio.insar.read import insar_grid, read_coherence  # noqa: E402

DATA = ROOT / "tests" / "data" / "pyrate_cropA"
REF = (-99.185, 19.445)  # west of the crop: hills, away from the subsiding lake bed

_MINTPY_SCRIPT = r"""
import os, sys, glob, subprocess, numpy as np, h5py
work = sys.argv[1]
os.chdir(work)
with open("bench.cfg", "w") as f:
    f.write('''
mintpy.load.processor = roipac
mintpy.load.unwFile = ./ifgs/*.unw
mintpy.load.corFile = ./ifgs/*.cor
mintpy.load.demFile = ./geom/dem.hgt
mintpy.reference.lalo = %s
mintpy.network.coherenceBased = no
mintpy.unwrapError.method = no
mintpy.networkInversion.weightFunc = var
mintpy.networkInversion.minTempCoh = 0.7
mintpy.networkInversion.maskDataset = no
mintpy.troposphericDelay.method = no
mintpy.deramp = no
mintpy.topographicResidual = %s
mintpy.topographicResidual.pixelwiseGeometry = no
mintpy.topographicResidual.polyOrder = %s
mintpy.topographicResidual.stepDate = no
mintpy.topographicResidual.excludeDate = no
mintpy.timeFunc.excludeDate = no
mintpy.compute.cluster = no
''' % (sys.argv[2], sys.argv[3], sys.argv[4]))
r = subprocess.run(["smallbaselineApp.py", "bench.cfg", "--end", "velocity"],
                   capture_output=True, text=True)
if r.returncode:
    print(r.stdout[-4000:]); print(r.stderr[-4000:]); sys.exit(1)
with h5py.File("velocity.h5") as f:
    np.save("velocity.npy", f["velocity"][:])
with h5py.File("timeseries.h5") as f:
    np.save("bperp.npy", f["bperp"][:])
with h5py.File("maskTempCoh.h5") as f:
    np.save("mask.npy", f["mask"][:])
"""


def _rmg(path: Path, amp: np.ndarray, val: np.ndarray) -> None:
    ny, nx = val.shape
    out = np.empty((ny, 2, nx), "<f4")
    out[:, 0] = amp
    out[:, 1] = val
    path.write_bytes(out.tobytes())


def _rsc(path: Path, meta: dict) -> None:
    Path(f"{path}.rsc").write_text("".join(f"{k:<40} {v}\n" for k, v in meta.items()))


def export_roipac(work: Path) -> dict:
    """Write the GAMMA interferograms as ROI_PAC files MintPy reads; returns metadata."""
    ifgs = find_interferograms([DATA], work / "vrt")
    grid = insar_grid(ifgs)
    t = grid.transform
    base = {"WIDTH": grid.width, "FILE_LENGTH": grid.height, "X_FIRST": t.c,
            "Y_FIRST": t.f, "X_STEP": t.a, "Y_STEP": t.e, "X_UNIT": "degrees",
            "Y_UNIT": "degrees", "PROJECTION": "LL", "WAVELENGTH": ifgs[0].wavelength,
            "PLATFORM": "Sen", "PROCESSOR": "roipac", "ORBIT_DIRECTION": "ASCENDING",
            "HEADING": ifgs[0].heading_deg, "CENTER_LINE_UTC": 2421.89,
            "STARTING_RANGE": 798980.1369, "RANGE_PIXEL_SIZE": 18.636496,
            "AZIMUTH_PIXEL_SIZE": 28.0233, "EARTH_RADIUS": 6375868.9414,
            "HEIGHT": 7073899.1954 - 6375868.9414, "ALOOKS": 2, "RLOOKS": 8,
            "INCIDENCE_ANGLE": ifgs[0].incidence_deg,
            "SLANT_RANGE_DISTANCE": ifgs[0].slant_range_m}
    (work / "ifgs").mkdir(parents=True)
    for ifg in ifgs:
        with rasterio.open(ifg.phase.path) as ds:
            ph = ds.read(1)
        coh = read_coherence(ifg, grid)
        coh = np.nan_to_num(coh)
        d12 = f"{ifg.date1:%y%m%d}-{ifg.date2:%y%m%d}"
        meta = {**base, "DATE12": d12, "P_BASELINE_TOP_HDR": ifg.bperp,
                "P_BASELINE_BOTTOM_HDR": ifg.bperp}
        unw = work / "ifgs" / f"filt_{ifg.date1:%Y%m%d}-{ifg.date2:%Y%m%d}.unw"
        _rmg(unw, (ph != 0).astype(np.float32), ph)
        _rsc(unw, meta)
        cor = unw.with_suffix(".cor")
        _rmg(cor, np.ones_like(coh), coh)
        _rsc(cor, meta)
    (work / "geom").mkdir()
    with rasterio.open(DATA / "geotiffs" / "cropA_T005A_dem.tif") as ds:
        dem = ds.read(1).astype(np.float32)
    _rmg(work / "geom" / "dem.hgt", np.ones_like(dem), dem)
    _rsc(work / "geom" / "dem.hgt", base)
    return {"grid": grid}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mintpy-python", default=str(ROOT / ".venv-mintpy" / "bin" / "python"))
    ap.add_argument("--min-coherence", type=float, default=0.0,
                    help="our per-pair coherence threshold (MintPy keeps every pair)")
    ap.add_argument("--no-dem-error", action="store_true",
                    help="neither tool estimates the DEM error")
    ap.add_argument("--poly-order", type=int, default=1,
                    help="MintPy's deformation model in its DEM-error step (its default "
                    "is 2; GDM-SAR fits a line, as order 1)")
    ap.add_argument("--out", default=str(ROOT / "bench-output" / "mintpy"))
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if not Path(args.mintpy_python).exists():
        print(f"skipped: no MintPy interpreter at {args.mintpy_python} (see the docstring)")
        return
    ours = run_timeseries(TimeseriesConfig(interferograms=[DATA], out=out / "gdm",
                                           reference=REF, closure_correction=False,
                                           min_mean_coherence=0.0,
                                           min_coherence=args.min_coherence,
                                           dem_error=not args.no_dem_error))
    with rasterio.open(ours.velocity) as ds:
        v_ours = ds.read(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_roipac(work)
        script = work / "run_mintpy.py"
        script.write_text(_MINTPY_SCRIPT)
        env_bin = str(Path(args.mintpy_python).parent)
        res = subprocess.run([args.mintpy_python, str(script), str(work),
                              f"{REF[1]}, {REF[0]}",
                              "no" if args.no_dem_error else "yes",
                              str(args.poly_order)], capture_output=True, text=True,
                             env={"PATH": env_bin + ":/usr/bin:/bin", "HOME": tmp},
                             check=False)
        if res.returncode:
            print(res.stdout[-3000:], res.stderr[-3000:])
            raise SystemExit("MintPy failed")
        v_mp = np.load(work / "velocity.npy")
        m_mp = np.load(work / "mask.npy")
        b_mp = np.load(work / "bperp.npy")
    doc = json.loads(ours.report.read_text())
    b_ours = np.array(doc["perpendicular_baselines_m"] or [np.nan])
    print("perpendicular baselines (m) ours  ", np.round(b_ours - b_ours[0], 2).tolist())
    print("perpendicular baselines (m) MintPy", np.round(b_mp - b_mp[0], 2).tolist())
    v_mp = np.where(m_mp & (v_mp != 0), v_mp, np.nan)
    both = np.isfinite(v_ours) & np.isfinite(v_mp)
    diff = v_ours - v_mp
    offset = float(np.median(diff[both]))
    d = (diff - offset)[both] * 1000
    rms = float(np.sqrt(np.mean(d ** 2)))
    print(f"pixels valid in both: {both.sum()} of {both.size} "
          f"(ours {np.isfinite(v_ours).sum()}, MintPy {np.isfinite(v_mp).sum()})")
    print(f"velocity range ours {np.nanmin(v_ours) * 1000:.1f}..{np.nanmax(v_ours) * 1000:.1f}"
          f" mm/yr, MintPy {np.nanmin(v_mp) * 1000:.1f}..{np.nanmax(v_mp) * 1000:.1f} mm/yr")
    print(f"reference alignment offset {offset * 1000:.3f} mm/yr")
    print(f"RMS velocity difference {rms:.3f} mm/yr, median |diff| "
          f"{float(np.median(np.abs(d))):.3f} mm/yr, 95th percentile "
          f"{float(np.percentile(np.abs(d), 95)):.3f} mm/yr")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = float(np.nanpercentile(np.abs(np.concatenate([v_ours[both], v_mp[both]])), 99)) * 1e3
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=100)
    for ax, arr, title in ((axes[0], v_ours * 1e3, "gdm sar timeseries"),
                           (axes[1], (v_mp + offset) * 1e3, "MintPy 1.6.4 (aligned)")):
        im = ax.imshow(arr, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{title}: LOS velocity (mm/yr)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    dd = np.where(both, (diff - offset) * 1e3, np.nan)
    im = axes[2].imshow(dd, cmap="RdBu_r", vmin=-3, vmax=3)
    axes[2].set_title(f"difference, RMS {rms:.2f} mm/yr")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "velocity_vs_mintpy.png")
    (out / "summary.json").write_text(json.dumps({
        "rms_mm_per_yr": rms, "offset_mm_per_yr": offset * 1000,
        "pixels_both": int(both.sum())}, indent=2))
    print(f"figure: {out / 'velocity_vs_mintpy.png'}")



if __name__ == "__main__":
    main()
