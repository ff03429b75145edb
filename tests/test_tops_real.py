"""TOPS ramp model on real Sentinel-1 pixels (Azores IW3 burst crop, tests/data).

The azimuth Doppler centroid of the burst data, measured in blocks of lines, must follow
the ramp model built from the annotation (data Doppler centroid, azimuth FM rate,
steering rate) and the orbit speed; after deramping every block must be centred. Over
land: the sea in the lower half of the crop carries its own Doppler (surface motion) and
is reported, not asserted.

``pytest tests/test_tops_real.py -s`` prints the block table (measured vs predicted, Hz).
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
import rasterio
from lxml import etree
from scipy.ndimage import uniform_filter

from gdmio.s1.orbit import parse_eof
from gdmio.s1.safe import parse_annotation
from kernels.tops import RampModel, block_centroids, deramp, doppler_centroid, wrap_frequency
from tests.datafiles import DATA

AZORES = DATA / "s1_azores_burst"
CROP = AZORES / "s1a-iw3-slc-vv_subset_hight9800_10400_width11000_11000.tiff"
ANNOTATION = AZORES / "s1a-iw3-slc-vv-20220918t074921-20220918t074946-045056-056232-006.xml"
ORBIT = AZORES / "S1A_OPER_AUX_RESORB_OPOD_20220918T093241_V20220918T053155_20220918T084925.EOF"
FIRST_LINE, FIRST_SAMPLE = 9800, 11000  # of the crop in the swath
RELATIVE_ORBIT = 9  # (45056 - 73) % 175 + 1
BLOCK = 32
LAND_DB = 32.0  # smoothed power threshold: land 38-45 dB, sea 21-25 dB in this crop


def _burst_setup(flip_steering: bool = False):
    ann = parse_annotation(ANNOTATION.read_bytes(), ANNOTATION.name, RELATIVE_ORBIT)
    burst = next(b for b in ann.bursts
                 if b.first_line <= FIRST_LINE < b.first_line + b.lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(CROP) as ds:
            data = ds.read(1).astype(np.complex64)
    mid = burst.azimuth_time + dt.timedelta(seconds=0.5 * burst.lines
                                            * ann.azimuth_time_interval)
    orbit = parse_eof(ORBIT).rebase(mid)
    _, vel = orbit.interpolate(0.0)
    steering = -ann.azimuth_steering_rate if flip_steering else ann.azimuth_steering_rate
    model = RampModel.from_annotation(
        float(np.linalg.norm(vel)), ann.radar_frequency, steering, ann.nearest(ann.fm, mid),
        ann.nearest(ann.dc, mid), ann.slant_range_time, ann.range_sampling_rate,
        ann.azimuth_time_interval, burst.lines, burst.samples)
    root = etree.fromstring(ANNOTATION.read_bytes())
    bandwidth = float(root.findtext(".//azimuthProcessing/processingBandwidth"))
    return ann, burst, data, model, bandwidth


def _land(data: np.ndarray) -> np.ndarray:
    power = uniform_filter(np.abs(data).astype(np.float64) ** 2, size=15)
    return 10 * np.log10(power + 1e-9) > LAND_DB


def _measure(data, model, burst, prf, mask):
    l0 = FIRST_LINE - burst.first_line  # burst line of the crop's first row
    centres, meas, frac = block_centroids(data, prf, BLOCK, mask, min_fraction=0.25)
    mid_sample = FIRST_SAMPLE + 0.5 * (data.shape[1] - 1)
    pred = doppler_centroid(model, centres + l0, np.full(centres.shape, mid_sample))
    der = deramp(data, model, l0, FIRST_SAMPLE)
    _, resid, _ = block_centroids(der, prf, BLOCK, mask, min_fraction=0.25)
    return centres + l0, meas, pred, resid, frac


def test_real_burst_doppler_follows_the_ramp_model_and_deramps_to_baseband():
    ann, burst, data, model, bandwidth = _burst_setup()
    prf = 1.0 / ann.azimuth_time_interval
    land = _land(data)
    assert 0.3 < land.mean() < 0.7, f"land fraction {land.mean():.2f}: mask threshold off"
    lines, meas, pred, resid, frac = _measure(data, model, burst, prf, land)
    diff = wrap_frequency(meas - pred, prf)
    tol = 0.05 * bandwidth
    print(f"\nAzores IW3 burst {burst.index + 1} (lines {burst.first_line}.."
          f"{burst.first_line + burst.lines - 1}), blocks of {BLOCK} lines over land; "
          f"prf {prf:.1f} Hz, azimuth bandwidth {bandwidth:.0f} Hz, tolerance {tol:.1f} Hz")
    print(" burst line  land  predicted (folded)  measured  meas-pred  deramped")
    for row in zip(lines, frac, pred, wrap_frequency(pred, prf), meas, diff, resid,
                   strict=True):
        print(" {:9.1f}  {:4.2f}  {:8.1f} ({:7.1f})  {:8.1f}  {:8.1f}  {:8.1f}".format(*row))
    assert lines.size >= 8, f"only {lines.size} land blocks"
    # the prediction sweeps more than a full PRF across the measured blocks
    assert np.ptp(pred) > prf
    assert np.abs(diff).max() <= tol, f"max |measured - predicted| {np.abs(diff).max():.1f} Hz"
    assert np.abs(resid).max() <= tol, f"max |deramped centroid| {np.abs(resid).max():.1f} Hz"
    # the rate of the sweep (unwrapped measured centroid vs line) matches kt dt
    unwrapped = pred + diff
    rate = np.polyfit(lines * ann.azimuth_time_interval, unwrapped, 1)[0]
    want = np.polyfit(lines * ann.azimuth_time_interval, pred, 1)[0]
    print(f"Doppler rate: measured {rate:.1f} Hz/s, model {want:.1f} Hz/s "
          f"({100 * (rate / want - 1):+.2f} %); mean residual {diff.mean():+.2f} Hz "
          f"= {diff.mean() / want / ann.azimuth_time_interval:+.3f} lines of timing")
    assert abs(rate / want - 1) < 0.02
    # timing: a constant residual is a time offset of residual / rate
    assert abs(diff.mean() / want) < 0.5 * ann.azimuth_time_interval
    # the sea (surface motion) for the record
    sea = ~_land(data) & (uniform_filter(land.astype(float), 31) < 0.01)
    _, _, _, sea_resid, _ = _measure(data, model, burst, prf, sea)
    if sea_resid.size:
        print(f"sea blocks after deramping: {np.round(sea_resid, 1).tolist()} Hz "
              "(surface motion: not asserted)")


def test_a_flipped_steering_rate_is_rejected_by_the_real_data():
    """Negative control: the wrong sign of the sweep misses by far more than the tolerance."""
    ann, burst, data, model, bandwidth = _burst_setup(flip_steering=True)
    prf = 1.0 / ann.azimuth_time_interval
    _, _, _, resid, _ = _measure(data, model, burst, prf, _land(data))
    assert np.abs(resid).max() > 4 * 0.05 * bandwidth, np.abs(resid).max()


@pytest.mark.slow
def test_simulated_safe_bursts_carry_the_same_doppler_history(tmp_path):
    """The SAFE simulator's bursts, measured like the real one, follow the same model."""
    from gdmio.s1.safe import open_safe
    from simulators.sar_safe import SimulateSafeConfig, simulate_safe

    sim = simulate_safe(SimulateSafeConfig(out=tmp_path, dates=2, bursts=2, samples=128,
                                           corner_reflectors=0, seed=3))
    product = open_safe(sim.products[0])
    ann = next(iter(product.swaths.values()))
    burst = ann.bursts[1]
    data = ann.read_burst(burst)
    mid = burst.azimuth_time + dt.timedelta(seconds=0.5 * burst.lines
                                            * ann.azimuth_time_interval)
    orbit = ann.orbit(mid)
    _, vel = orbit.interpolate(0.0)
    model = RampModel.from_annotation(
        float(np.linalg.norm(vel)), ann.radar_frequency, ann.azimuth_steering_rate,
        ann.nearest(ann.fm, mid), ann.nearest(ann.dc, mid), ann.slant_range_time,
        ann.range_sampling_rate, ann.azimuth_time_interval, burst.lines, burst.samples)
    prf = 1.0 / ann.azimuth_time_interval
    valid = np.abs(data) > 0
    block = 16
    centres, meas, _ = block_centroids(data, prf, block, valid, min_fraction=0.9)
    pred = doppler_centroid(model, centres, np.full(centres.shape, 0.5 * burst.samples))
    diff = wrap_frequency(meas - pred, prf)
    der = deramp(data, model)
    _, resid, _ = block_centroids(der, prf, block, valid, min_fraction=0.9)
    print(f"\nsimulated burst: max |measured - predicted| {np.abs(diff).max():.1f} Hz, "
          f"max |deramped| {np.abs(resid).max():.1f} Hz (prf {prf:.0f} Hz)")
    assert np.ptp(pred) > 0.8 * prf  # a TOPS-like sweep: about a PRF across the burst
    assert np.abs(diff).max() < 0.05 * prf
    assert np.abs(resid).max() < 0.05 * prf
