"""Small interferogram products in the exact layouts other InSAR processors write.

Each writer takes LOS displacements per date (metres, positive towards the satellite,
the project's convention) and writes unwrapped interferograms the way that processor
does: file names, headers, byte order, band layout, units, sign convention (positive
phase = range increase for all of them), and coherence. Layouts were learnt from the
processors' documentation (ROI_PAC "rmg" files, GAMMA parameter files, ISCE2 XML
components, the HyP3 product guide, LiCSAR/LiCSBAS frames, FLATSIM deliveries).
"""

from __future__ import annotations

import datetime as dt
import math
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

C = 299_792_458.0
S1_FREQ = 5.405000454334350e9
S1_WL = C / S1_FREQ
LON0, LAT0, STEP = 10.0, 45.0, 0.001


def phase_of(disp_m: np.ndarray, wavelength: float) -> np.ndarray:
    """Range-increase phase (radians) of a LOS displacement towards the satellite."""
    return (-4 * math.pi / wavelength * disp_m).astype(np.float32)


def scene(ny=24, nx=32, dates=3, seed=0):
    """Dates, per-date LOS displacement (m) and pairs: uplift bump growing in time."""
    d0 = dt.date(2020, 1, 1)
    ds = [d0 + dt.timedelta(days=12 * k) for k in range(dates)]
    yy, xx = np.mgrid[0:ny, 0:nx]
    bump = np.exp(-(((yy - ny / 2) / 6) ** 2 + ((xx - nx / 2) / 8) ** 2))
    disp = np.stack([0.004 * k * bump + 0.0005 * k for k in range(dates)]).astype(np.float32)
    pairs = [(i, j) for i in range(dates) for j in range(i + 1, min(dates, i + 3))]
    rng = np.random.default_rng(seed)
    coh = rng.uniform(0.6, 0.95, size=(len(pairs), ny, nx)).astype(np.float32)
    return ds, disp, pairs, coh


def _geo(ny, nx):
    return Affine(STEP, 0, LON0, 0, -STEP, LAT0)


def _tif(path: Path, data: np.ndarray, crs="EPSG:4326", transform=None, nodata=None,
         tags=None, dtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    arr = data[None] if data.ndim == 2 else data
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=dtype or arr.dtype, crs=crs,
                       transform=transform or _geo(*arr.shape[1:]), nodata=nodata) as ds:
        ds.write(arr.astype(dtype or arr.dtype))
        if tags:
            ds.update_tags(**tags)


# ----------------------------------------------------------------------------- ROI_PAC
def _rsc(path: Path, ny: int, nx: int, extra: dict):
    keys = {"WIDTH": nx, "FILE_LENGTH": ny, "XMIN": 0, "XMAX": nx - 1, "YMIN": 0,
            "YMAX": ny - 1, "X_FIRST": LON0, "Y_FIRST": LAT0, "X_STEP": STEP,
            "Y_STEP": -STEP, "X_UNIT": "degres", "Y_UNIT": "degres", "PROJECTION": "LL",
            **extra}
    Path(f"{path}.rsc").write_text("".join(f"{k:<40} {v}\n" for k, v in keys.items()))


def _rmg(path: Path, amp: np.ndarray, val: np.ndarray):
    ny, nx = val.shape
    out = np.empty((ny, 2, nx), "<f4")
    out[:, 0] = amp
    out[:, 1] = val
    path.write_bytes(out.tobytes())


def write_roipac(folder: Path, dates, disp, pairs, coh, wavelength=0.0562356424,
                 prefix="geo_"):
    folder.mkdir(parents=True, exist_ok=True)
    ny, nx = disp.shape[1:]
    for k, (i, j) in enumerate(pairs):
        d12 = f"{dates[i]:%y%m%d}-{dates[j]:%y%m%d}"
        unw = folder / f"{prefix}{d12}.unw"
        ph = phase_of(disp[j] - disp[i], wavelength)
        ph[0, 0] = 0.0  # not unwrapped
        _rmg(unw, np.ones((ny, nx)), ph)
        _rsc(unw, ny, nx, {"WAVELENGTH": wavelength, "DATE12": d12,
                           "P_BASELINE_TOP_HDR": 10.0 * (j - i),
                           "P_BASELINE_BOTTOM_HDR": 10.0 * (j - i)})
        cor = unw.with_suffix(".cor")
        _rmg(cor, np.ones((ny, nx)), coh[k])
        _rsc(cor, ny, nx, {"DATE12": d12})


# ------------------------------------------------------------------------------- GAMMA
_SLC_PAR = """Gamma Interferometric SAR Processor (ISP) - Image Parameter File

title:     s1a-iw1-slc-vv-{d:%Y%m%d}t000000
sensor:    S1A IW IW1 VV
date:      {d:%Y %m %d}
start_time:              2412.556599   s
range_samples:                 {nx}
azimuth_lines:                 {ny}
image_format:               FCOMPLEX
image_geometry:             SLANT_RANGE
heading:                 -12.2742586   degrees
center_range_slc:         878319.1947  m
incidence_angle:             39.7036   degrees
radar_frequency:        {f:.7e}  Hz
"""

_DEM_PAR = """Gamma DIFF&GEO DEM/MAP parameter file
title: dem
DEM_projection:     EQA
data_format:        REAL*4
width:                {nx}
nlines:               {ny}
corner_lat:     {lat}  decimal degrees
corner_lon:    {lon}  decimal degrees
post_lat:   {dlat}  decimal degrees
post_lon:    {dlon}  decimal degrees
"""


def write_gamma(folder: Path, dates, disp, pairs, coh, freq=S1_FREQ):
    folder.mkdir(parents=True, exist_ok=True)
    ny, nx = disp.shape[1:]
    wl = C / freq
    for d in dates:
        (folder / f"{d:%Y%m%d}.slc.par").write_text(_SLC_PAR.format(d=d, nx=nx, ny=ny, f=freq))
    (folder / "EQA.dem_par").write_text(_DEM_PAR.format(nx=nx, ny=ny, lat=LAT0, lon=LON0,
                                                        dlat=-STEP, dlon=STEP))
    for k, (i, j) in enumerate(pairs):
        stem = folder / f"{dates[i]:%Y%m%d}_{dates[j]:%Y%m%d}"
        ph = phase_of(disp[j] - disp[i], wl)
        Path(f"{stem}.unw").write_bytes(ph.astype(">f4").tobytes())
        Path(f"{stem}.cc").write_bytes(coh[k].astype(">f4").tobytes())


# ------------------------------------------------------------------------------- ISCE2
def _isce_xml(path: Path, ny, nx, bands, dtype="FLOAT"):
    props = {"width": nx, "length": ny, "number_bands": bands, "scheme": "BIL",
             "data_type": dtype, "byte_order": "l", "access_mode": "read",
             "file_name": path.name, "image_type": "unw" if bands == 2 else "cor"}
    body = "".join(f'    <property name="{k}">\n        <value>{v}</value>\n'
                   f'    </property>\n' for k, v in props.items())
    Path(f"{path}.xml").write_text(f'<imageFile>\n{body}</imageFile>\n')
    gdt, size = {"FLOAT": ("Float32", 4), "BYTE": ("Byte", 1)}[dtype]
    vrt = [f'<VRTDataset rasterXSize="{nx}" rasterYSize="{ny}">']
    for b in range(bands):
        vrt.append(f'<VRTRasterBand dataType="{gdt}" band="{b + 1}" '
                   f'subClass="VRTRawRasterBand"><SourceFilename relativeToVRT="1">'
                   f'{path.name}</SourceFilename><ByteOrder>LSB</ByteOrder>'
                   f'<ImageOffset>{size * nx * b}</ImageOffset>'
                   f'<PixelOffset>{size}</PixelOffset>'
                   f'<LineOffset>{size * nx * bands}</LineOffset></VRTRasterBand>')
    vrt.append("</VRTDataset>")
    Path(f"{path}.vrt").write_text("\n".join(vrt))


def write_isce_tops(root: Path, dates, disp, pairs, coh, wavelength=S1_WL, xml_only=False):
    ny, nx = disp.shape[1:]
    ref = root / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    (ref / "IW1.xml").write_text(
        '<productmanager_name>\n  <component name="instance">\n'
        '    <property name="radarwavelength">\n'
        f'      <value>{wavelength!r}</value>\n    </property>\n'
        '  </component>\n</productmanager_name>\n')
    for k, (i, j) in enumerate(pairs):
        folder = root / "merged" / "interferograms" / f"{dates[i]:%Y%m%d}_{dates[j]:%Y%m%d}"
        folder.mkdir(parents=True, exist_ok=True)
        unw = folder / "filt_fine.unw"
        _rmg(unw, np.ones((ny, nx)), phase_of(disp[j] - disp[i], wavelength))
        _isce_xml(unw, ny, nx, 2)
        cor = folder / "filt_fine.cor"
        cor.write_bytes(coh[k].astype("<f4").tobytes())
        _isce_xml(cor, ny, nx, 1)
        # SNAPHU connected components (uint8, 0 = not unwrapped), as topsStack writes
        comp = folder / "filt_fine.unw.conncomp"
        labels = np.ones((ny, nx), np.uint8)
        labels[-1, -1] = 0
        comp.write_bytes(labels.tobytes())
        _isce_xml(comp, ny, nx, 1, "BYTE")
        if xml_only:
            for f in (unw, cor, comp):
                Path(f"{f}.vrt").unlink()


# -------------------------------------------------------------------------------- HyP3
def hyp3_name(d1, d2):
    return (f"S1AA_{d1:%Y%m%d}T004006_{d2:%Y%m%d}T004005_VVP{(d2 - d1).days:03d}"
            f"_INT80_G_ueF_{(d1.toordinal() * 7 + d2.toordinal()) % 0xFFFF:04X}")


def write_hyp3(folder: Path, dates, disp, pairs, coh, zipped=True):
    folder.mkdir(parents=True, exist_ok=True)
    ny, nx = disp.shape[1:]
    utm = Affine(80.0, 0, 500000.0, 0, -80.0, 4980000.0)
    for k, (i, j) in enumerate(pairs):
        name = hyp3_name(dates[i], dates[j])
        prod = folder / name
        _tif(prod / f"{name}_unw_phase.tif", phase_of(disp[j] - disp[i], S1_WL),
             "EPSG:32632", utm, nodata=0.0)
        _tif(prod / f"{name}_corr.tif", coh[k], "EPSG:32632", utm, nodata=0.0)
        _tif(prod / f"{name}_lv_theta.tif", np.full((ny, nx), 0.7, np.float32),
             "EPSG:32632", utm, nodata=0.0)
        (prod / f"{name}.txt").write_text(
            f"Reference Granule: S1A_IW_SLC__1SDV_{dates[i]:%Y%m%d}T004006\n"
            f"Secondary Granule: S1A_IW_SLC__1SDV_{dates[j]:%Y%m%d}T004005\n"
            "Reference Pass Direction: DESCENDING\nReference Orbit Number: 20027\n"
            f"Baseline: {12.5 * (j - i)}\nUTC time: 2421.89\nHeading: 347.7257414\n"
            "Spacecraft height: 693000.0\nEarth radius at nadir: 6375868.9\n"
            "Slant range near: 798980.1\nSlant range center: 878319.2\n"
            "Slant range far: 957658.3\nRange looks: 20\nAzimuth looks: 4\n"
            "INSAR phase filter: adf\nPhase filter parameter: 0.6\n"
            "Unwrapping type: mcf\nSpeckle filter: yes\n")
        if zipped:
            with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
                for f in sorted(prod.iterdir()):
                    zf.write(f, f"{name}/{f.name}")
            for f in prod.iterdir():
                f.unlink()
            prod.rmdir()


# ------------------------------------------------------------------------------ LiCSAR
def write_licsar(frame: Path, dates, disp, pairs, coh):
    for k, (i, j) in enumerate(pairs):
        pair = f"{dates[i]:%Y%m%d}_{dates[j]:%Y%m%d}"
        folder = frame / "GEOC" / pair
        _tif(folder / f"{pair}.geo.unw.tif", phase_of(disp[j] - disp[i], S1_WL), nodata=0.0)
        _tif(folder / f"{pair}.geo.cc.tif", np.round(coh[k] * 255).astype(np.uint8),
             dtype="uint8", nodata=0)
    (frame / "metadata").mkdir(parents=True, exist_ok=True)
    (frame / "metadata" / "metadata.txt").write_text(
        f"master={dates[0]:%Y%m%d}\nradar_frequency={S1_FREQ}\nheading=-12.27\n")


# ----------------------------------------------------------------------------- FLATSIM
def write_flatsim(track: Path, dates, disp, pairs, coh):
    (track / "NSBAS_DAUX_A001").mkdir(parents=True, exist_ok=True)
    (track / "NSBAS_DAUX_A001" / "nsbas.proc").write_text(
        f"SarMasterDir = {dates[0]:%Y%m%d}\nRlooks_int = 2\nRlooks_unw = 8\n")
    intdir = track / "INT"
    intdir.mkdir(parents=True, exist_ok=True)
    for k, (i, j) in enumerate(pairs):
        d1, d2 = f"{dates[i]:%Y%m%d}", f"{dates[j]:%Y%m%d}"
        tmp = intdir / f"tmp_{d1}_{d2}"
        inu = tmp / f"CNES_InU_geo_{d1}_{d2}_sd_era_8rlks.tiff"
        _tif(inu, phase_of(disp[j] - disp[i], S1_WL), nodata=0.0)
        cohf = tmp / f"CNES_Coh_geo_{d1}_{d2}_8rlks.tiff"
        _tif(cohf, coh[k], nodata=0.0)
        name = f"FLATSIM_INT_{dates[i]:%Y-%m-%d}_{dates[j]:%Y-%m-%d}_A001.zip"
        with zipfile.ZipFile(intdir / name, "w") as zf:
            for f in (inu, cohf):
                zf.write(f, f.name)
                f.unlink()
        tmp.rmdir()


# ----------------------------------------------------------------------------- GeoTIFF
def write_geotiff(folder: Path, dates, disp, pairs, coh, wavelength=S1_WL, tags=True,
                  sep="-", yymmdd=False):
    fmt = "%y%m%d" if yymmdd else "%Y%m%d"
    for k, (i, j) in enumerate(pairs):
        pair = f"{dates[i]:{fmt}}{sep}{dates[j]:{fmt}}"
        extra = {"WAVELENGTH": repr(wavelength)} if tags else None
        _tif(folder / f"ifg_{pair}.tif", phase_of(disp[j] - disp[i], wavelength),
             tags=extra)
        _tif(folder / f"coh_{pair}.tif", coh[k])


WRITERS = {"ROI_PAC": write_roipac, "GAMMA": write_gamma, "ISCE2": write_isce_tops,
           "HyP3": write_hyp3, "LiCSAR": write_licsar, "FLATSIM": write_flatsim,
           "GeoTIFF": write_geotiff}
