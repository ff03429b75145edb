"""GDM-OPT quality figures: Sentinel-2 artefact removal and the gain of a redundant network.

    python benchmarks/bench_opt_quality.py artefacts     # error reduction per simulated case
    python benchmarks/bench_opt_quality.py images        # the same through gdm opt run
    python benchmarks/bench_opt_quality.py redundancy    # chain vs all pairs, 6 dates
    python benchmarks/bench_opt_quality.py network       # the same on pair noise models

``artefacts``: pair fields of a landslide with simulated push-broom artefacts
(:func:`simulators.opt.pushbroom_artefacts`: along-track sinusoids, detector steps) and
0.03 px of white noise, 10 % failed windows; RMSE against the true field before and after
:func:`kernels.s2artefacts.estimate_artefacts`, with the detector footprints given and
estimated from the field.

``images``: simulated image pairs (384 px, landslide, 30 dB) rendered with per-date
jitter and detector offsets (``SimulateConfig.jitter_px``, ``detectors``...), run through
``gdm_opt.pipeline.run`` with ``artefacts='none'`` and ``'all'`` (slide preset): RMSE of
the east/north products against the truth.

``network``: the inversion alone (``kernels.timeseries.invert_timeseries``) on 6 dates,
chain vs all pairs, for two noise models: independent pair noise (correlation noise) and
per-date noise shared by every pair of the date (image artefacts).

``redundancy``: six simulated dates (landslide, 20 dB) run end to end through
``gdm_opt.pipeline.run`` twice: a chain of the 5 consecutive pairs, and all 15 pairs.
Printed: the RMS error of the velocity and of each date's displacement against the
simulator's truth, next to the mean uncertainty the products predict
(``velocity_std_*``, ``timeseries_*_std``). A benchmark prints; it does not assert.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdm_opt.config import OptConfig  # noqa: E402
from gdm_opt.demo import _sample_truth  # noqa: E402
from gdm_opt.pipeline import run  # noqa: E402
from kernels.s2artefacts import estimate_artefacts  # noqa: E402
from simulators.opt import (  # noqa: E402
    PushbroomArtefacts,
    SimulateConfig,
    pushbroom_artefacts,
    simulate,
)

CASES = {
    "jitter 0.3/0.15 px P=40, 4 detectors": PushbroomArtefacts((0.3, 0.15), (40.0,), 4, 0.15),
    "jitter 0.1/0.2 px P=25+70, 6 detectors": PushbroomArtefacts((0.1, 0.2), (25.0, 70.0), 6,
                                                                 0.2),
    "jitter 0.2/0.2 px P=90, 3 detectors": PushbroomArtefacts((0.2, 0.2), (90.0,), 3, 0.1),
    "jitter 0.15/0.1 px P=30, 12 detectors": PushbroomArtefacts((0.15, 0.1), (30.0,), 12,
                                                                0.15),
    "jitter 0.25/0.1 px P=50, 4 detectors, track 12 deg": PushbroomArtefacts(
        (0.25, 0.1), (50.0,), 4, 0.15, angle_deg=12.0),
}


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.all(np.isfinite(a), axis=0) & np.all(np.isfinite(b), axis=0)
    return float(np.sqrt(np.mean((a - b)[:, ok] ** 2)))


def artefacts(seeds: int) -> None:
    """Error reduction factor per case (median over seeds)."""
    print(f"{'case':52s} {'before':>7s} {'after(fp)':>9s} {'x(fp)':>6s} "
          f"{'after(est)':>10s} {'x(est)':>6s}")
    for name, art in CASES.items():
        shape = (160, 360 if art.detectors > 6 else 192)
        ny, nx = shape
        i, j = np.mgrid[0:ny, 0:nx]
        bump = np.exp(-(((i - 0.45 * ny) / (0.12 * ny)) ** 2
                        + ((j - 0.55 * nx) / (0.15 * nx)) ** 2))
        truth = np.stack([1.0 * bump, 1.2 * bump])
        rows = []
        for seed in range(seeds):
            field_a, labels, _ = pushbroom_artefacts(shape, art, seed=seed)
            rng = np.random.default_rng(seed + 100)
            field = truth + field_a + 0.03 * rng.standard_normal(field_a.shape)
            field[:, rng.random(shape) < 0.1] = np.nan
            usable = np.all(np.isfinite(field), axis=0)
            fp = estimate_artefacts(field, usable, labels, angle_deg=art.angle_deg)
            est = estimate_artefacts(field, usable, angle_deg=art.angle_deg,
                                     find_detectors=True)
            rows.append((_rmse(field, truth), _rmse(field - fp.correction, truth),
                         _rmse(field - est.correction, truth)))
        b, a1, a2 = np.median(np.array(rows), axis=0)
        print(f"{name:52s} {b:7.3f} {a1:9.3f} {b / a1:6.1f} {a2:10.3f} {b / a2:6.1f}")
    print("RMSE in pixels against the true field (noise 0.03 px included); median of "
          f"{seeds} seeds; fp: footprints given, est: detector steps estimated")


IMAGE_CASES = {
    "jitter 0.25 px P=160 px, 3 detectors (estimated)":
        ({"jitter_px": 0.25, "jitter_period_px": 160.0, "detectors": 3,
          "detector_step_px": 0.15, "seed": 4}, False),
    "jitter 0.1 px P=100 px, 3 detectors (estimated)":
        ({"jitter_px": 0.1, "jitter_period_px": 100.0, "detectors": 3,
          "detector_step_px": 0.1, "seed": 5}, False),
    "jitter 0.3 px P=300 px, no detector step":
        ({"jitter_px": 0.3, "jitter_period_px": 300.0, "seed": 6}, False),
    "jitter 0.2 px P=240 px, 4 detectors tilted 10 deg (footprints)":
        ({"jitter_px": 0.2, "jitter_period_px": 240.0, "detectors": 4,
          "detector_step_px": 0.2, "track_angle_deg": 10.0, "seed": 8}, True),
}


def images() -> None:
    """Artefacts rendered into the images, removed by gdm opt run."""
    from gdm_opt.demo import accuracy_against_truth
    from tests.test_s2_artefacts import _write_footprints

    print(f"{'case (384 px landslide, 30 dB)':64s} {'none':>6s} {'all':>6s} {'x':>5s}")
    for name, (kw, footprints) in IMAGE_CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SimulateConfig(case="landslide", size=384, dates=2, **kw)
            sim = simulate(cfg, Path(tmp) / "in")
            if footprints:
                _write_footprints(cfg, sim.images)
            rmse = {}
            for mode in ("none", "all"):
                out = run(OptConfig(images=sim.images, out=Path(tmp) / mode, preset="slide",
                                    artefacts=mode))
                rmse[mode] = accuracy_against_truth(out.east, out.north, sim.truth_east,
                                                    sim.truth_north, band=2,
                                                    resolution=10.0).rmse_px
        print(f"{name:64s} {rmse['none']:6.3f} {rmse['all']:6.3f} "
              f"{rmse['none'] / rmse['all']:5.1f}")
    print("RMSE (px) of east/north against the truth; artefacts none vs all, slide preset")


def network(pixels: int = 40000) -> None:
    """Chain vs all pairs on the inversion alone, two noise models."""
    from kernels.timeseries import invert_timeseries

    t = np.arange(6) * 60 / 365.25
    v = 1.0
    nets = {"chain": np.array([(k, k + 1) for k in range(5)]),
            "all": np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])}
    print(f"{'noise model':20s} {'network':8s} {'pairs':>5s} {'vel err':>8s} "
          f"{'scatter':>8s} {'formal':>8s} {'product':>8s} {'date err':>9s} {'date std':>9s}")
    for model in ("pair noise 0.1 px", "date noise 0.07 px"):
        for name, pairs in nets.items():
            rng = np.random.default_rng(0)
            if model.startswith("pair"):
                noise = 0.1 * rng.standard_normal((len(pairs), pixels))
            else:
                e = 0.07 * rng.standard_normal((6, pixels))
                noise = e[pairs[:, 1]] - e[pairs[:, 0]]
            obs = ((t[pairs[:, 1]] - t[pairs[:, 0]])[:, None] * v + noise).astype(np.float32)
            sig = 0.1
            w = np.full(obs.shape, 1 / sig ** 2, np.float32)
            res = invert_timeseries(pairs, obs[:, None, :], w[:, None, :], t,
                                    inverse_variance=True)
            ve = res.velocity[0] - v
            de = res.series[1:, 0] - (t[1:] * v)[:, None]
            prod = np.fmax(res.velocity_std, res.velocity_formal_std)
            print(f"{model:20s} {name:8s} {len(pairs):5d} {np.sqrt(np.mean(ve ** 2)):8.3f} "
                  f"{np.nanmean(res.velocity_std):8.3f} "
                  f"{np.nanmean(res.velocity_formal_std):8.3f} {np.nanmean(prod):8.3f} "
                  f"{np.sqrt(np.mean(de ** 2)):9.4f} {np.nanmean(res.series_std[1:]):9.4f}")
    print("px/yr and px; err: RMS error; scatter, formal, product (the larger of the two, "
          "written as velocity_std_*), date std: mean predicted 1-sigma (a-priori pair "
          "sigma 0.1 px, scaled by max(1, s0^2))")


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def redundancy(size: int, snr: float) -> None:
    """Chain vs fully redundant network on 6 simulated dates, end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(SimulateConfig(case="landslide", size=size, dates=6, amplitude_px=2.0,
                                      snr_db=snr, interval_days=60, seed=3), Path(tmp) / "in")
        res = 10.0
        print(f"6 dates, landslide, {size} px, {snr:g} dB, slide preset (window 32, step 8)")
        print(f"{'network':10s} {'pairs':>5s} {'vel err RMS':>12s} {'vel std pred':>12s} "
              f"{'date err RMS':>12s} {'date std pred':>13s}  (m/yr, m)")
        for label, kw in (("chain", {"pairs": "sequential", "neighbours": 1}),
                          ("all", {"pairs": "all"})):
            out = run(OptConfig(images=sim.images, out=Path(tmp) / label, preset="slide",
                                **kw))
            v_err, v_std, d_err, d_std = [], [], [], []
            for comp in ("east", "north"):
                vel = _read(getattr(out, f"velocity_{comp}"))[0]
                vtrue = _sample_truth(getattr(sim, f"velocity_{comp}"),
                                      getattr(out, f"velocity_{comp}"), 1)
                vstd = _read(getattr(out, f"velocity_std_{comp}"))[0]
                ser = _read(getattr(out, f"timeseries_{comp}"))
                sstd = _read(getattr(out, f"timeseries_{comp}_std"))
                ok = np.isfinite(vel) & np.isfinite(vtrue)
                v_err.append((vel - vtrue)[ok])
                v_std.append(vstd[ok & np.isfinite(vstd)])
                for k in range(1, 6):
                    t = _sample_truth(getattr(sim, f"truth_{comp}"),
                                      getattr(out, f"timeseries_{comp}"), k + 1)
                    okk = np.isfinite(ser[k]) & np.isfinite(t)
                    d_err.append((ser[k] - t)[okk])
                    d_std.append(sstd[k][okk & np.isfinite(sstd[k])])
            n_pairs = len(list((Path(tmp) / label / "pairs").glob("*_east.tif")))
            ve = np.concatenate(v_err)
            de = np.concatenate(d_err)
            print(f"{label:10s} {n_pairs:5d} {np.sqrt(np.mean(ve ** 2)):12.4f} "
                  f"{np.mean(np.concatenate(v_std)):12.4f} {np.sqrt(np.mean(de ** 2)):12.4f} "
                  f"{np.mean(np.concatenate(d_std)):13.4f}")
        print(f"pixel {res:g} m; errors against the simulator's truth over valid windows")


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("artefacts")
    a.add_argument("--seeds", type=int, default=5)
    r = sub.add_parser("redundancy")
    r.add_argument("--size", type=int, default=384)
    r.add_argument("--snr", type=float, default=20.0)
    sub.add_parser("images")
    sub.add_parser("network")
    args = ap.parse_args()
    if args.what == "artefacts":
        artefacts(args.seeds)
    elif args.what == "images":
        images()
    elif args.what == "network":
        network()
    else:
        redundancy(args.size, args.snr)


if __name__ == "__main__":
    main()
