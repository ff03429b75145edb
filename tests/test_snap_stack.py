"""SNAP-coregistered stacks (ZNAP and BEAM-DIMAP) as GDM-SAR input, on the real Amsterdam pair.

The ZNAP products are SNAP's own (tests/data/s1_amsterdam_snap); the BEAM-DIMAP inputs
are written from the same samples and metadata in SNAP's layout (tests/snapdimap.py):
one date per product, and both dates in one product.

``pytest tests/test_snap_stack.py -s`` prints the baselines and the pair's comparison
with a direct computation.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from gdm.cli import main
from gdm_sar.snap import (
    SnapImportConfig,
    import_snap,
    radar_coordinates_latlon,
    read_snap_stack,
)
from gdmcore import InputError
from gdmio.snap import open_snap
from kernels.insar import coherence_debias
from tests.datafiles import DATA
from tests.snapdimap import dimap_from, write_dimap

AMS = DATA / "s1_amsterdam_snap"
REF = AMS / "20230331-coreg.znap"
SEC = AMS / "20230319-coreg.znap"
H, W = 84, 338


def _raw(product: Path, band: str) -> np.ndarray:
    """The band straight from its zarr chunk (one uncompressed big-endian chunk)."""
    return np.fromfile(product / band / "0.0", ">f4").reshape(H, W)


def _read_slc(path: Path) -> tuple[np.ndarray, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read(1), ds.tags()


@pytest.fixture(scope="module")
def dimap_folders(tmp_path_factory) -> dict[str, Path]:
    """BEAM-DIMAP copies: one date per product, and both dates in one product."""
    base = tmp_path_factory.mktemp("dimap")
    one = base / "one_per_date"
    with open_snap(REF) as r, open_snap(SEC) as s:
        dimap_from(r, one, "ref_31Mar2023")
        dimap_from(s, one, "sec_19Mar2023", big_endian=False)  # little-endian ENVI too
        both = base / "stack"
        bands = {b: (r.bands[b].read(), r.bands[b].unit) for b in r.bands}
        bands |= {b: (s.bands[b].read(), s.bands[b].unit) for b in s.bands}
        write_dimap(both, "Orb_Stack_Deb", bands, s.tie_point_grids, s.metadata, s.start)
    return {"one": one, "both": both}


def test_znap_reader_gives_the_stored_samples_and_metadata():
    with open_snap(REF) as p:
        assert p.format == "ZNAP" and (p.width, p.height) == (W, H)
        assert np.array_equal(p.bands["i_VV_31Mar2023"].read(), _raw(REF, "i_VV_31Mar2023"))
        assert np.array_equal(p.bands["q_VV_31Mar2023"].read(10, 20),
                              _raw(REF, "q_VV_31Mar2023")[10:20])
        am = p.abstracted()
        assert am.get("first_line_time").isoformat() == "2023-03-31T05:50:35.812250"
        assert am.units["radar_frequency"] == "MHz"
        # tie-point grids follow SNAP's convention: slant range time of column 0 equals
        # slant_range_to_first_pixel (two-way, ns) to a small fraction of a sample
        srt = p.tie_point_grids["slant_range_time"]
        t0 = float(srt.at(np.array(0.0), np.array(-0.5)))
        want = 2 * am.get("slant_range_to_first_pixel") / 299792458.0 * 1e9
        assert abs(t0 - want) < 0.1 * 15.54, (t0, want)


def test_znap_stack_reads_dates_geometry_and_baselines_from_snap_metadata():
    stack = read_snap_stack(AMS)
    dates = [a.date.isoformat() for a in stack.acquisitions]
    assert dates == ["2023-03-19", "2023-03-31"]
    sec, ref = stack.acquisitions
    assert (sec.role, ref.role) == ("secondary", "reference")
    assert sec.source.startswith("S1A_IW_SLC__1SDV_20230319")
    assert abs(stack.wavelength - 0.05546576) < 1e-7
    assert 42.9 < stack.incidence_deg < 43.1 and 923e3 < stack.slant_range < 925e3
    assert abs(stack.heading_deg - (190.1528 - 360)) < 1e-3
    assert stack.latlon_source.startswith("bands latitude_VV/longitude_VV")
    # SNAP's Perp Baseline vs the zero-Doppler positions of its own state vectors
    print(f"\nbperp 19Mar vs 31Mar: SNAP {sec.bperp:.3f} m, from the orbits "
          f"{sec.bperp_orbits:.3f} m ({sec.bperp_source})")
    assert sec.bperp_source.startswith("Baselines/Ref_31Mar2023/Secondary_19Mar2023")
    assert abs(sec.bperp - 33.8997) < 1e-3
    assert sec.bperp_orbits is not None and abs(sec.bperp_orbits - sec.bperp) < 0.01 * sec.bperp
    # and SNAP's per-pixel height-to-phase factor: h2ph = -Bperp / (R sin(theta))
    with open_snap(SEC) as s:
        h2ph = float(np.mean(s.bands["h2ph_VV_19Mar2023"].read()))
    implied = -h2ph * stack.slant_range * np.sin(np.radians(stack.incidence_deg))
    print(f"bperp implied by SNAP's h2ph band: {implied:.3f} m")
    assert abs(implied - sec.bperp) < 0.05 * sec.bperp


def test_baselines_fall_back_on_the_state_vectors():
    with open_snap(SEC) as s:
        meta = copy.deepcopy(s.metadata)
        am = meta.element("Abstracted_Metadata")
        am.elements = [e for e in am.elements if e.name != "Baselines"]
        assert not any(e.name == "Baselines" for e in am.elements)
        stack = read_snap_stack_from([s], meta)
    sec = stack.acquisitions[0]
    assert sec.bperp_source == "orbit state vectors of the SNAP metadata"
    assert abs(sec.bperp - 33.8997) < 0.5


def read_snap_stack_from(products, metadata):
    from gdm_sar import snap as snapmod

    for p in products:
        p.metadata = metadata
    with open_snap(REF) as r:
        return snapmod._read([r, *products], None)


@pytest.mark.parametrize("layout", ["one", "both", "znap"])
def test_every_layout_imports_the_same_stack(tmp_path, dimap_folders, layout):
    folder = AMS if layout == "znap" else dimap_folders[layout]
    out = import_snap(SnapImportConfig(folder=folder, out=tmp_path / "stack"))
    files = sorted(out.glob("slc_*.tif"))
    assert [f.name for f in files] == ["slc_20230319.tif", "slc_20230331.tif"]
    s19, t19 = _read_slc(files[0])
    s31, t31 = _read_slc(files[1])
    assert np.array_equal(s19.real, _raw(SEC, "i_VV_19Mar2023"))
    assert np.array_equal(s19.imag, _raw(SEC, "q_VV_19Mar2023"))
    assert np.array_equal(s31, _raw(REF, "i_VV_31Mar2023") + 1j * _raw(REF, "q_VV_31Mar2023"))
    assert float(t19["PERPENDICULAR_BASELINE"]) == 0.0
    assert abs(float(t31["PERPENDICULAR_BASELINE"]) + 33.8997) < 1e-3
    assert t19["ACQUISITION_DATE"] == "2023-03-19" and t31["POLARISATION"] == "VV"
    with np.load(out / "snap_geometry.npz") as g:
        assert np.array_equal(g["lat"], _raw(REF, "latitude_VV").astype(np.float64))
    report = json.loads((out / "snap_import.json").read_text())
    assert report["acquisitions"][0]["role"] == "secondary"


def test_latlon_inversion_finds_radar_pixels(tmp_path):
    from types import SimpleNamespace

    from insar.geocode import map_grid

    lat, lon = _raw(REF, "latitude_VV").astype(float), _raw(REF, "longitude_VV").astype(float)
    grid = map_grid(SimpleNamespace(lat=lat, lon=lon, shape=lat.shape), (1, 1))
    rows, cols = radar_coordinates_latlon(lat, lon, grid)
    # map pixel centres traced back: their lat/lon interpolated in the radar grid equal
    # the map pixels' own lat/lon
    from pyproj import Transformer
    from scipy.ndimage import map_coordinates

    ok = np.isfinite(rows)
    assert ok.mean() > 0.4
    x, y = grid.centres()
    lo, la = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x[ok], y[ok])
    back_lat = map_coordinates(lat, [rows[ok], cols[ok]], order=1, mode="nearest")
    back_lon = map_coordinates(lon, [rows[ok], cols[ok]], order=1, mode="nearest")
    err_m = np.hypot((back_lat - la) * 111_320, (back_lon - lo) * 111_320 * np.cos(0.914))
    inner = (rows[ok] > 1) & (rows[ok] < H - 2) & (cols[ok] > 1) & (cols[ok] < W - 2)
    print(f"\nlat/lon inversion: max error {err_m[inner].max():.4f} m over {inner.sum()} pixels")
    assert err_m[inner].max() < 0.05


def _direct(looks: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Interferogram phase and sample coherence computed here from the SNAP samples."""
    s19 = _raw(SEC, "i_VV_19Mar2023") + 1j * _raw(SEC, "q_VV_19Mar2023")
    s31 = _raw(REF, "i_VV_31Mar2023") + 1j * _raw(REF, "q_VV_31Mar2023")
    la, lr = looks
    ny, nx = H // la, W // lr

    def blocks(a):
        return a[:ny * la, :nx * lr].reshape(ny, la, nx, lr).sum(axis=(1, 3))

    cross = blocks(s19.astype(np.complex128) * np.conj(s31))
    p1, p2 = blocks(np.abs(s19) ** 2), blocks(np.abs(s31) ** 2)
    return np.angle(cross), np.abs(cross) / np.sqrt(p1 * p2)


@pytest.mark.slow
def test_amsterdam_pair_through_gdm_sar_run_matches_a_direct_computation(tmp_path):
    out = tmp_path / "products"
    result = CliRunner().invoke(main, ["sar", "run", str(AMS), "--out", str(out), "--looks",
                                       "5", "5", "--alpha", "0", "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pair = out / "interferograms" / "20230319_20230331"
    with rasterio.open(pair / "wrapped.tif") as ds:
        phase = ds.read(1)
    with rasterio.open(pair / "coherence.tif") as ds:
        coh = ds.read(1)
    direct_phase, direct_coh = _direct((5, 5))
    assert phase.shape == direct_phase.shape == (16, 67)
    debiased = coherence_debias(direct_coh.astype(np.float32), 25)
    dcoh = float(np.nanmean(np.abs(coh - debiased)))
    good = direct_coh > 0.7
    dphi = np.angle(np.exp(1j * (phase - direct_phase)))[good]
    circ = float(np.abs(np.angle(np.mean(np.exp(1j * dphi)))))
    print(f"\nAmsterdam 5x5: mean coherence {np.nanmean(coh):.3f} (debiased product), "
          f"{direct_coh.mean():.3f} (direct sample coherence); |product - direct debiased| "
          f"mean {dcoh:.2e}; product - direct sample coherence mean "
          f"{np.nanmean(coh - direct_coh):+.3f}; phase where coherence > 0.7 "
          f"({good.sum()} px): circular mean difference {circ:.2e} rad, max "
          f"{np.abs(dphi).max():.2e} rad")
    assert 0.70 < direct_coh.mean() < 0.82  # the pair is coherent (README: about 0.76)
    assert dcoh <= 0.02
    assert abs(float(np.nanmean(coh - direct_coh))) <= 0.02
    assert good.sum() > 100 and circ <= 0.05
    geocoded = sorted(p.name for p in (out / "geocoded").glob("*.tif"))
    assert "mean_coherence.tif" in geocoded
    with rasterio.open(out / "geocoded" / "mean_coherence.tif") as ds:
        assert ds.crs.to_epsg() == 32631  # UTM 31N over Amsterdam
        g = ds.read(1)
    assert 0.3 < np.isfinite(g).mean() and abs(np.nanmean(g) - np.nanmean(coh)) < 0.05


def _cli(folder: Path, out: Path):
    return CliRunner().invoke(main, ["sar", "run", str(folder), "--out", str(out), "-q"],
                              catch_exceptions=False)


def _assert_refused(folder: Path, out: Path, words: str) -> None:
    result = _cli(folder, out)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists(), "a refused job left files behind"


def test_bad_snap_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    with open_snap(REF) as r, open_snap(SEC) as s:
        # no i/q bands
        bad = tmp_path / "noiq"
        dimap_from(r, bad, "ref", bands=["latitude_VV", "longitude_VV"])
        dimap_from(s, bad, "sec")
        _assert_refused(bad, tmp_path / "o1", "no i_*/q_* band pair")
        # mixed sizes
        mixed = tmp_path / "mixed"
        dimap_from(r, mixed, "ref")
        bands = {b: (s.bands[b].read()[:80], s.bands[b].unit) for b in s.bands}
        write_dimap(mixed, "sec", bands, s.tie_point_grids, s.metadata, s.start)
        _assert_refused(mixed, tmp_path / "o2", "mixed sizes")
        # missing metadata: the secondary's Slave_Metadata element is gone
        meta = copy.deepcopy(s.metadata)
        meta.elements = [e for e in meta.elements if e.name != "Slave_Metadata"]
        nometa = tmp_path / "nometa"
        dimap_from(r, nometa, "ref")
        dimap_from(s, nometa, "sec", metadata=meta)
        _assert_refused(nometa, tmp_path / "o3", "missing metadata")
        # missing radar frequency
        meta = copy.deepcopy(s.metadata)
        meta.element("Abstracted_Metadata").attributes.pop("radar_frequency")
        nofreq = tmp_path / "nofreq"
        dimap_from(s, nofreq, "sec", metadata=meta)
        dimap_from(r, nofreq, "ref", metadata=meta)
        _assert_refused(nofreq, tmp_path / "o4", "radar_frequency")
    # a band file shorter than its header says
    trunc = tmp_path / "trunc"
    shutil.copytree(next(iter([tmp_path / "nometa"])), trunc)
    (trunc / "sec.dim").unlink()
    shutil.rmtree(trunc / "sec.data")
    with open_snap(SEC) as s:
        dimap_from(s, trunc, "sec")
    img = trunc / "sec.data" / "i_VV_19Mar2023.img"
    img.write_bytes(img.read_bytes()[:1000])
    _assert_refused(trunc, tmp_path / "o5", "expected")
    # a header pointing outside its product
    evil = tmp_path / "evil"
    shutil.copytree(trunc, evil)
    dim = evil / "sec.dim"
    dim.write_text(dim.read_text(encoding="latin-1").replace(
        'href="sec.data/i_VV_19Mar2023.hdr"', 'href="../../../etc/passwd.hdr"'),
        encoding="latin-1")
    _assert_refused(evil, tmp_path / "o6", "leaves the product")


def test_znap_zip_and_dimap_zip_are_read(tmp_path, dimap_folders):
    folder = tmp_path / "zips"
    folder.mkdir()
    with zipfile.ZipFile(folder / "20230331-coreg.znap.zip", "w") as z:
        for f in sorted(REF.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(REF).as_posix(), compress_type=zipfile.ZIP_DEFLATED)
    src = dimap_folders["one"]
    with zipfile.ZipFile(folder / "sec.zip", "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file() and f.name.startswith("sec") or "sec_19Mar2023.data" in f.parts:
                z.write(f, f.relative_to(src).as_posix())
    stack = read_snap_stack(folder)
    assert [a.date.isoformat() for a in stack.acquisitions] == ["2023-03-19", "2023-03-31"]


def test_reader_rejects_hostile_zarr(tmp_path):
    bad = tmp_path / "x.znap"
    shutil.copytree(REF, bad)
    arr = bad / "i_VV_31Mar2023" / ".zarray"
    meta = json.loads(arr.read_text())
    meta["compressor"] = {"id": "zlib", "level": 1}
    arr.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="corrupt zlib chunk"):
        open_snap(bad).bands["i_VV_31Mar2023"].read()
    meta["compressor"] = None
    meta["shape"] = [84, 339]
    arr.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="339x84"):
        open_snap(bad)


@pytest.mark.slow
def test_gdm_sar_process_takes_an_uploaded_snap_stack_zip(tmp_path, dimap_folders):
    """One uploaded zip holding a two-date BEAM-DIMAP stack is a gdm-sar job's input."""
    from gdmio.process import JobContext
    from workflows.processes import get_process

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    src = dimap_folders["both"]
    with zipfile.ZipFile(uploads / "Orb_Stack_Deb.zip", "w") as z:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(src).as_posix(), compress_type=zipfile.ZIP_DEFLATED)
    spec = get_process("gdm-sar")
    inputs = spec.validate_inputs({"slcs": ["Orb_Stack_Deb.zip"], "azimuth_looks": 5,
                                   "range_looks": 5, "filter_alpha": 0.0})
    ctx = JobContext(job_id="j", workdir=tmp_path / "work", uploads_dir=uploads,
                     progress=lambda f, m: None)
    result = spec.execute(inputs, ctx)
    assert "mean_coherence_geocoded" in result
    report = json.loads((ctx.workdir / result["report"]).read_text())
    assert report["dates"] == ["2023-03-19", "2023-03-31"]
    assert report["perpendicular_baselines_m"] == [0.0, -33.9]
    # a zip of something else next to it is refused with one clear reason
    (uploads / "notes.zip").write_bytes((uploads / "Orb_Stack_Deb.zip").read_bytes()[:0] or
                                        b"PK\x05\x06" + b"\0" * 18)
    bad = spec.validate_inputs({"slcs": ["Orb_Stack_Deb.zip", "notes.zip"]})
    with pytest.raises(InputError, match="mixed with other files"):
        spec.execute(bad, JobContext(job_id="k", workdir=tmp_path / "work2",
                                     uploads_dir=uploads, progress=lambda f, m: None))
