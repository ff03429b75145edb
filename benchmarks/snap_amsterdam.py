"""The real Amsterdam SNAP pair through ``gdm sar run``: figures and quicklooks.

Runs ``gdm sar run tests/data/s1_amsterdam_snap --looks 5 5 --alpha 0`` into a temporary
folder, compares the pair's interferogram and coherence with a direct computation from
the SNAP samples, prints the figures and writes the quicklook ``docs/amsterdam_snap_pair.png``
(coherence and wrapped phase in radar geometry, pixels drawn at their ground size).

    python benchmarks/snap_amsterdam.py [--docs docs]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernels.insar import coherence_debias  # noqa: E402
from tests.test_snap_stack import AMS, _direct  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "products"
        subprocess.run([str(Path(sys.executable).parent / "gdm"), "sar", "run", str(AMS),
                        "--out", str(out), "--looks", "5", "5", "--alpha", "0", "-q"],
                       check=True)
        pair = out / "interferograms" / "20230319_20230331"
        with rasterio.open(pair / "wrapped.tif") as ds:
            phase = ds.read(1)
        with rasterio.open(pair / "coherence.tif") as ds:
            coh = ds.read(1)
        report = (out / "stack" / "snap_import.json").read_text()
    direct_phase, direct_coh = _direct((5, 5))
    good = direct_coh > 0.7
    dphi = np.angle(np.exp(1j * (phase - direct_phase)))[good]
    print(f"product mean coherence (debiased, 25 looks): {np.nanmean(coh):.4f}")
    print(f"direct sample coherence mean: {direct_coh.mean():.4f}; debiased "
          f"{np.nanmean(coherence_debias(direct_coh.astype(np.float32), 25)):.4f}")
    print(f"mean |product - direct debiased|: "
          f"{np.nanmean(np.abs(coh - coherence_debias(direct_coh.astype(np.float32), 25))):.2e}")
    print(f"phase, coherence > 0.7 ({good.sum()} px): circular mean difference "
          f"{abs(np.angle(np.mean(np.exp(1j * dphi)))):.2e} rad")
    import json

    rep = json.loads(report)
    print("baselines:", [(a["date"], a["perpendicular_baseline_m"], a["baseline_source"])
                         for a in rep["acquisitions"]])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ny, nx = coh.shape
    az_m, rg_m = 5 * 13.86, 5 * 2.33 / np.sin(np.radians(rep["incidence_deg"]))
    extent = (0, nx * rg_m / 1000, ny * az_m / 1000, 0)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), dpi=80)
    im0 = axes[0].imshow(coh, cmap="gray", vmin=0, vmax=1, extent=extent)
    axes[0].set_title("coherence (5x5 looks, debiased)", fontsize=9)
    fig.colorbar(im0, ax=axes[0], fraction=0.046)
    im1 = axes[1].imshow(phase, cmap="twilight", vmin=-np.pi, vmax=np.pi, extent=extent)
    axes[1].set_title("phase of 20230319 x conj(20230331) (rad)", fontsize=9)
    fig.suptitle("Amsterdam, S1A IW3 VV, SNAP-coregistered (ZNAP), radar geometry",
                 fontsize=10)
    fig.colorbar(im1, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_xlabel("ground range (km)", fontsize=8)
        ax.set_ylabel("azimuth (km)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    args.docs.mkdir(parents=True, exist_ok=True)
    dest = args.docs / "amsterdam_snap_pair.png"
    fig.savefig(dest)
    print(f"quicklook: {dest}")


if __name__ == "__main__":
    main()
