"""DSM-OPT at scene scale: peak memory and km²/hour on a large simulated Pléiades pair.

A pair of SIZE × SIZE pixels (0.5 m, B/H 0.3) of a known smooth relief (heights
800 ± 170 m, slopes up to ~40 %) with a multi-scale albedo is rendered in strips
(it never is in memory whole) as tiled GeoTIFFs with fitted RPCs: each pixel's ray is
intersected with the analytic surface (fixed-point iterations), the albedo is value
noise hashed from the ground coordinates. Then ``gdm dsm run`` makes the DSM with no
option but ``--workers``; the peak resident memory of its whole process tree is
sampled from /proc every 0.2 s, and its CPU time (user + system of the run and its
worker processes) is counted besides the wall time: on a shared machine the wall time
depends on the load, the CPU time much less. The seconds of each stage (from
``report.json``) are printed. The DSM is checked against the analytic surface on a
sample of its cells (median, NMAD, completeness).

Usage: python benchmarks/bench_dsm_scale.py [--size 20000] [--workers 2] [--keep DIR]
It prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numba
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.rpc import fit_rpc  # noqa: E402

GSD = 0.5
LON, LAT = 5.72, 45.19
TANS = ((0.02, 0.15), (-0.02, -0.15))  # horizontal offset per metre of height: B/H 0.3


@numba.njit(cache=True, inline="always")
def _height(e, n):  # pragma: no cover - compiled
    tau = 2.0 * np.pi
    return (800.0 + 120.0 * np.sin(tau * e / 2900.0 + 0.3) * np.cos(tau * n / 3700.0)
            + 40.0 * np.sin(tau * (e + n) / 900.0) + 8.0 * np.sin(tau * e / 170.0)
            * np.sin(tau * n / 230.0))


@numba.njit(cache=True, inline="always")
def _hash(i, j, o):  # pragma: no cover - compiled
    h = (i * 374761393 + j * 668265263 + o * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 32767.5 - 1.0


@numba.njit(cache=True, inline="always")
def _albedo(e, n):  # pragma: no cover - compiled
    total = 0.0
    lams = (0.7, 2.0, 6.0, 20.0)
    ws = (1.0, 0.8, 0.6, 0.4)
    for o in range(4):
        x = e / lams[o]
        y = n / lams[o]
        i = int(np.floor(x))
        j = int(np.floor(y))
        fx = x - i
        fy = y - j
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        a = _hash(i, j, o)
        b = _hash(i + 1, j, o)
        c = _hash(i, j + 1, o)
        d = _hash(i + 1, j + 1, o)
        total += ws[o] * ((1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d))
    return 0.5 + 0.2 * total


@numba.njit(cache=True, parallel=True)
def _render(r0, rows, cols, m, o, t, seed, out):  # pragma: no cover - compiled
    for k in numba.prange(rows):
        r = r0 + k
        for c in range(cols):
            acc = 0.0
            for si in range(2):  # 2x2 supersampling
                for sj in range(2):
                    rr = r - 0.25 + 0.5 * si
                    cc = c - 0.25 + 0.5 * sj
                    e0 = m[0, 0] * cc + m[0, 1] * rr + o[0]
                    n0 = m[1, 0] * cc + m[1, 1] * rr + o[1]
                    h = 800.0
                    for _ in range(6):
                        h = _height(e0 - h * t[0], n0 - h * t[1])
                    acc += _albedo(e0 - h * t[0], n0 - h * t[1])
            noise = 0.004 * _hash(r, c, seed)
            out[k, c] = min(max((0.25 * acc + noise) * 4000.0, 1.0), 65535.0)


def simulate(folder: Path, size: int) -> list[Path]:
    """Render the pair (strips of 512 rows) with fitted RPCs; return the image paths."""
    epsg = 32600 + int((LON + 180) // 6) + 1
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    to_geo = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    e_c, n_c = to_utm.transform(LON, LAT)
    paths = []
    for k, t in enumerate(TANS):
        rot = np.deg2rad((1.5, -2.0)[k])
        m = GSD * np.array([[np.cos(rot), np.sin(rot)], [np.sin(rot), -np.cos(rot)]])
        centre = np.array([(size - 1) / 2, (size - 1) / 2])
        o = -m @ centre + 800.0 * np.asarray(t)  # the centre sees (0, 0) at 800 m
        g = np.linspace(-0.05, 1.05, 15) * (size - 1)
        hh = np.linspace(500, 1100, 7)
        gc, gr, gh = np.meshgrid(g, g, hh, indexing="ij")
        pe = m[0, 0] * gc + m[0, 1] * gr + o[0] - gh * t[0]
        pn = m[1, 0] * gc + m[1, 1] * gr + o[1] - gh * t[1]
        lon, lat = to_geo.transform(e_c + pe, n_c + pn)
        rpc = fit_rpc(lon, lat, gh, gr, gc)
        pr, pc = rpc.project(lon, lat, gh)
        fit = float(np.max(np.hypot(pr - gr, pc - gc)))
        path = folder / f"view{k + 1}_20240501.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                           dtype="uint16", rpcs=rpc.to_rasterio(), tiled=True,
                           blockxsize=512, blockysize=512, compress="DEFLATE",
                           BIGTIFF="IF_SAFER") as ds:
            ds.update_tags(TIFFTAG_DATETIME="2024:05:01 10:30:00")
            buf = np.empty((512, size))
            for r0 in range(0, size, 512):
                n = min(512, size - r0)
                _render(r0, n, size, m, o, np.asarray(t, float), k + 1, buf)
                ds.write(buf[:n].astype(np.uint16), 1, window=Window(0, r0, size, n))
        print(f"  {path.name}: RPC fit residual {fit:.1e} px", flush=True)
        paths.append(path)
    return paths


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    total = 0
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def check(dsm_path: Path, samples: int = 200_000) -> dict:
    """Median, NMAD of the error and completeness on random cells of the DSM."""
    epsg = 32600 + int((LON + 180) // 6) + 1
    e_c, n_c = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}",
                                    always_xy=True).transform(LON, LAT)
    rng = np.random.default_rng(0)
    errs, n_seen, n_valid = [], 0, 0
    with rasterio.open(dsm_path) as ds:
        for _, win in ds.block_windows(1):
            if rng.uniform() > 0.25:
                continue
            a = ds.read(1, window=win)
            t = ds.window_transform(win)
            rr, cc = np.mgrid[0:a.shape[0], 0:a.shape[1]]
            e = t.c + (cc + 0.5) * t.a - e_c
            n = t.f + (rr + 0.5) * t.e - n_c
            inside = (np.abs(e) < 0.4 * ds.width * t.a) & (np.abs(n) < 0.4 * ds.height * t.a)
            tru = _height_np(e, n)
            ok = inside & (a != ds.nodata)
            n_seen += int(inside.sum())
            n_valid += int(ok.sum())
            errs.append((a[ok] - tru[ok]).astype(np.float64))
            if sum(x.size for x in errs) > samples:
                break
    err = np.concatenate(errs)
    med = float(np.median(err))
    return {"median_m": med, "nmad_m": float(1.4826 * np.median(np.abs(err - med))),
            "completeness": n_valid / max(n_seen, 1), "cells": int(err.size)}


def _height_np(e: np.ndarray, n: np.ndarray) -> np.ndarray:
    tau = 2.0 * np.pi
    return (800.0 + 120.0 * np.sin(tau * e / 2900.0 + 0.3) * np.cos(tau * n / 3700.0)
            + 40.0 * np.sin(tau * (e + n) / 900.0) + 8.0 * np.sin(tau * e / 170.0)
            * np.sin(tau * n / 230.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000, help="Image side, pixels.")
    ap.add_argument("--workers", type=int, default=2, help="gdm dsm run --workers.")
    ap.add_argument("--keep", type=Path, help="Folder for the images and products "
                    "(default: temporary; images there are reused).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        images = sorted(root.glob("view*_20240501.tif"))
        t0 = time.perf_counter()
        if len(images) != 2:
            print(f"simulating a {args.size}x{args.size} pair in {root}", flush=True)
            images = simulate(root, args.size)
        t_sim = time.perf_counter() - t0
        out = root / "dsm"
        gdm = Path(sys.executable).with_name("gdm")
        cmd = [str(gdm), "dsm", "run", *map(str, images), "--out", str(out), "-q",
               "--workers", str(args.workers)]
        load0 = os.getloadavg()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t1 = time.perf_counter()
        proc = subprocess.Popen(cmd)
        peak, loads = 0, []
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                loads.append(os.getloadavg()[0])
                done.wait(0.2)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        done.set()
        th.join()
        seconds = time.perf_counter() - t1
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if rc != 0:
            print(f"gdm dsm run failed (exit {rc})")
            sys.exit(1)
        report = json.loads((out / "report.json").read_text())
        q = check(out / "dsm.tif")
    km2 = report["grid"]["width"] * report["grid"]["height"] * report["grid"][
        "resolution_m"] ** 2 * report["grid"]["valid_fraction"] / 1e6
    print(f"pair {args.size}x{args.size} px ({args.size ** 2 / 1e6:.0f} Mpix per image, "
          f"simulated in {t_sim:.0f} s); {os.cpu_count()} CPU(s), load average "
          f"{load0[0]:.1f} at the start, {np.mean(loads):.1f} during the run (the "
          "machine is shared)")
    print(f"gdm dsm run --workers {args.workers}: {seconds:.0f} s, peak RSS of the process "
          f"tree {peak / 2**30:.2f} GiB, DSM {report['grid']['width']}x"
          f"{report['grid']['height']} cells, {km2:.1f} km² of valid DSM -> "
          f"{km2 / (seconds / 3600):.1f} km²/hour; blocks read back from disk "
          f"{report['grid'].get('blocks_read_back')}")
    print(f"CPU time of the process tree {cpu:.0f} s -> {km2 / (cpu / 3600):.1f} km² per "
          f"CPU-hour; epipolar images {report['epipolar']['shape']}, "
          f"{report['epipolar']['tiles']} tiles")
    print(f"seconds by stage: {report.get('seconds_by_stage')}; pair: "
          f"{report['pairs'][0].get('seconds')}")
    print(f"against the true surface: median {q['median_m']:+.3f} m, NMAD "
          f"{q['nmad_m']:.3f} m, completeness {q['completeness']:.1%} "
          f"({q['cells']} cells sampled)")


if __name__ == "__main__":
    main()
