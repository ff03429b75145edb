"""Sentinel-1 orbits: EOF files (precise / restituted) and annotation state vectors.

An :class:`Orbit` holds Earth-fixed (ITRF/WGS84) state vectors as seconds since an epoch
(naive datetimes are UTC throughout :mod:`gdmio.s1`). Positions between state vectors
come from **Hermite interpolation** (positions *and* velocities of the ``window``
nearest vectors define a polynomial of degree ``2 * window - 1``), as ISCE and SNAP do.
For the numba geometry kernels an orbit is condensed over the time span of a scene into
one :class:`OrbitPolynomial` (least-squares fit to the Hermite-interpolated track, with its
fit error recorded: sub-millimetre over a minute of orbit).

EOF layout (ESA Earth Explorer file)::

    Earth_Explorer_File/Data_Block/List_of_OSVs/OSV/{UTC, X, Y, Z, VX, VY, VZ, Quality}

with ``UTC=YYYY-MM-DDThh:mm:ss.ffffff``. File names follow
``S1A_OPER_AUX_POEORB_OPOD_<produced>_V<valid from>_<valid to>.EOF``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lxml import etree

from gdmcore import InputError
from gdmio.providers.orbits import OrbitFile

__all__ = ["Orbit", "OrbitPolynomial", "parse_eof", "find_orbit_file", "parse_time",
           "write_eof"]

_MIN_VECTORS = 4


def parse_time(text: str) -> dt.datetime:
    """A naive UTC datetime from ISO text (``UTC=`` prefix and ``Z`` suffix allowed)."""
    text = text.strip()
    if "=" in text[:4]:
        text = text.split("=", 1)[1]
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{(frac + '000000')[:6]}"
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class OrbitPolynomial:
    """Orbit position as polynomials in ``u = (t - t_mid) / t_scale`` (t: orbit seconds).

    ``coef`` has shape ``(3, degree + 1)``, highest power first (``numpy.polyval``).
    ``fit_error_m`` is the largest position misfit to the Hermite track.
    """

    coef: np.ndarray
    t_mid: float
    t_scale: float
    t_start: float
    t_end: float
    fit_error_m: float

    def position(self, t: np.ndarray | float) -> np.ndarray:
        """Positions (..., 3) at orbit times ``t``."""
        u = (np.asarray(t, float) - self.t_mid) / self.t_scale
        return np.stack([np.polyval(c, u) for c in self.coef], axis=-1)

    def velocity(self, t: np.ndarray | float) -> np.ndarray:
        """Velocities (..., 3) at orbit times ``t``."""
        u = (np.asarray(t, float) - self.t_mid) / self.t_scale
        return np.stack([np.polyval(np.polyder(c), u) / self.t_scale for c in self.coef],
                        axis=-1)


@dataclass(frozen=True)
class Orbit:
    """Earth-fixed state vectors: ``t`` (s since ``epoch``), ``pos`` and ``vel`` (n, 3)."""

    epoch: dt.datetime
    t: np.ndarray
    pos: np.ndarray
    vel: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if len(self.t) < _MIN_VECTORS:
            raise InputError(f"orbit ({self.source}): {len(self.t)} state vector(s), "
                             f"at least {_MIN_VECTORS} needed")
        if np.any(np.diff(self.t) <= 0):
            raise InputError(f"orbit ({self.source}): state vector times are not increasing")

    def seconds(self, when: dt.datetime) -> float:
        """Orbit time (s since the epoch) of a naive UTC datetime."""
        return (when - self.epoch).total_seconds()

    def covers(self, start: float, end: float, margin: float = 0.0) -> bool:
        """Whether ``[start - margin, end + margin]`` lies within the state vectors."""
        return bool(self.t[0] <= start - margin and self.t[-1] >= end + margin)

    def crop(self, start: float, end: float, margin: float = 120.0) -> Orbit:
        """The state vectors within ``margin`` seconds of ``[start, end]`` (at least 8)."""
        i0 = max(0, int(np.searchsorted(self.t, start - margin)) - 1)
        i1 = min(len(self.t), int(np.searchsorted(self.t, end + margin)) + 1)
        while i1 - i0 < 8 and (i0 > 0 or i1 < len(self.t)):
            i0, i1 = max(0, i0 - 1), min(len(self.t), i1 + 1)
        return Orbit(self.epoch, self.t[i0:i1], self.pos[i0:i1], self.vel[i0:i1], self.source)

    def rebase(self, epoch: dt.datetime) -> Orbit:
        """The same vectors with times counted from ``epoch``."""
        shift = (self.epoch - epoch).total_seconds()
        return Orbit(epoch, self.t + shift, self.pos, self.vel, self.source)

    def interpolate(self, t: np.ndarray | float, window: int = 4
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Hermite-interpolated positions and velocities (..., 3) at orbit times ``t``.

        Raises
        ------
        InputError
            When a time lies outside the state vectors (extrapolation is refused).

        """
        tq = np.atleast_1d(np.asarray(t, float))
        if tq.size and (tq.min() < self.t[0] - 1e-6 or tq.max() > self.t[-1] + 1e-6):
            raise InputError(f"orbit ({self.source}) covers {self.t[0]:.1f}..{self.t[-1]:.1f} s "
                             f"but times {tq.min():.1f}..{tq.max():.1f} s are asked for")
        m = min(window, len(self.t))
        start = np.clip(np.searchsorted(self.t, tq) - m // 2, 0, len(self.t) - m)
        pos = np.empty(tq.shape + (3,))
        vel = np.empty(tq.shape + (3,))
        for s in np.unique(start):
            sel = start == s
            pos[sel], vel[sel] = _hermite(self.t[s:s + m], self.pos[s:s + m],
                                          self.vel[s:s + m], tq[sel])
        shape = np.shape(t) + (3,)
        return pos.reshape(shape), vel.reshape(shape)

    def polynomial(self, start: float, end: float, degree: int = 9,
                   margin: float = 5.0) -> OrbitPolynomial:
        """Fit one polynomial per axis to the Hermite track over ``[start, end]``."""
        a, b = start - margin, end + margin
        a, b = max(a, self.t[0]), min(b, self.t[-1])
        if b <= a:
            raise InputError(f"orbit ({self.source}) does not cover {start:.1f}..{end:.1f} s")
        ts = np.linspace(a, b, max(200, 8 * (degree + 1)))
        p, _ = self.interpolate(ts)
        mid, scale = 0.5 * (a + b), max(0.5 * (b - a), 1e-3)
        u = (ts - mid) / scale
        coef = np.stack([np.polyfit(u, p[:, k], degree) for k in range(3)])
        fit = np.stack([np.polyval(c, u) for c in coef], axis=-1)
        err = float(np.abs(fit - p).max())
        return OrbitPolynomial(coef=coef, t_mid=mid, t_scale=scale, t_start=a, t_end=b,
                               fit_error_m=err)


def _hermite(tk: np.ndarray, pk: np.ndarray, vk: np.ndarray, tq: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial of degree 2m-1 through m positions with their velocities."""
    m = len(tk)
    mid = tk.mean()
    scale = max(float(tk[-1] - tk[0]), 1e-3)
    u = (tk - mid) / scale
    n = 2 * m
    powers = np.arange(n)
    a = np.zeros((n, n))
    a[:m] = u[:, None] ** powers
    a[m:, 1:] = powers[1:] * u[:, None] ** (powers[1:] - 1)
    rhs = np.concatenate([pk, vk * scale])
    c = np.linalg.solve(a, rhs)  # (n, 3)
    uq = (tq - mid) / scale
    vp = uq[:, None] ** powers
    vd = np.zeros_like(vp)
    vd[:, 1:] = powers[1:] * uq[:, None] ** (powers[1:] - 1)
    return vp @ c, (vd @ c) / scale


def parse_eof(path: str | Path, epoch: dt.datetime | None = None) -> Orbit:
    """Read an EOF orbit file.

    Raises
    ------
    InputError
        When the file is missing, is not EOF XML or holds fewer than 4 state vectors.

    """
    path = Path(path)
    try:
        root = etree.parse(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise InputError(f"{path.name}: cannot be read as an EOF orbit file ({exc})") from None
    osvs = root.findall(".//List_of_OSVs/OSV")
    if not osvs:
        raise InputError(f"{path.name}: no OSV state vector (not an EOF orbit file?)")
    times, pos, vel = [], [], []
    try:
        for osv in osvs:
            times.append(parse_time(osv.findtext("UTC")))
            pos.append([float(osv.findtext(k)) for k in ("X", "Y", "Z")])
            vel.append([float(osv.findtext(k)) for k in ("VX", "VY", "VZ")])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path.name}: malformed state vector ({exc})") from None
    epoch = epoch or times[0]
    t = np.array([(x - epoch).total_seconds() for x in times])
    return Orbit(epoch, t, np.array(pos), np.array(vel), f"EOF {path.name}")


def find_orbit_file(folder: str | Path, platform: str, start: dt.datetime,
                    stop: dt.datetime, margin_s: float = 60.0) -> Path | None:
    """The best EOF in ``folder`` for a scene: newest precise one covering it, else restituted.

    ``start``/``stop`` are naive UTC. Returns ``None`` when no file covers the scene.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    margin = dt.timedelta(seconds=margin_s)
    found: dict[str, list[tuple[OrbitFile, Path]]] = {"POEORB": [], "RESORB": []}
    for p in folder.rglob("*.EOF"):
        o = OrbitFile.from_key(p.name)
        if o is None or o.platform != platform:
            continue
        a, b = o.valid_from.replace(tzinfo=None), o.valid_to.replace(tzinfo=None)
        if a <= start - margin and b >= stop + margin:
            found[o.kind].append((o, p))
    for kind in ("POEORB", "RESORB"):
        if found[kind]:
            return max(found[kind], key=lambda op: op[0].produced)[1]
    return None


def write_eof(path: str | Path, times: list[dt.datetime], pos: np.ndarray, vel: np.ndarray,
              mission: str = "Sentinel-1A", kind: str = "POEORB") -> Path:
    """Write state vectors as an EOF file (the simulator's orbit files)."""
    path = Path(path)
    root = etree.Element("Earth_Explorer_File")
    head = etree.SubElement(root, "Earth_Explorer_Header")
    fixed = etree.SubElement(head, "Fixed_Header")
    etree.SubElement(fixed, "File_Name").text = path.stem
    etree.SubElement(fixed, "File_Description").text = (
        "Precise Orbit Ephemerides (POE) Orbit File" if kind == "POEORB"
        else "Restituted Orbit File")
    etree.SubElement(fixed, "Mission").text = mission
    etree.SubElement(fixed, "File_Type").text = f"AUX_{kind}"
    valid = etree.SubElement(fixed, "Validity_Period")
    etree.SubElement(valid, "Validity_Start").text = f"UTC={times[0]:%Y-%m-%dT%H:%M:%S}"
    etree.SubElement(valid, "Validity_Stop").text = f"UTC={times[-1]:%Y-%m-%dT%H:%M:%S}"
    block = etree.SubElement(root, "Data_Block", type="xml")
    osvs = etree.SubElement(block, "List_of_OSVs", count=str(len(times)))
    for t, p, v in zip(times, pos, vel, strict=True):
        osv = etree.SubElement(osvs, "OSV")
        tai = t + dt.timedelta(seconds=37)
        etree.SubElement(osv, "TAI").text = f"TAI={tai:%Y-%m-%dT%H:%M:%S.%f}"
        etree.SubElement(osv, "UTC").text = f"UTC={t:%Y-%m-%dT%H:%M:%S.%f}"
        etree.SubElement(osv, "UT1").text = f"UT1={t:%Y-%m-%dT%H:%M:%S.%f}"
        etree.SubElement(osv, "Absolute_Orbit").text = "+0"
        for k, x in zip(("X", "Y", "Z"), p, strict=True):
            etree.SubElement(osv, k, unit="m").text = f"{x:.6f}"
        for k, x in zip(("VX", "VY", "VZ"), v, strict=True):
            etree.SubElement(osv, k, unit="m/s").text = f"{x:.6f}"
        etree.SubElement(osv, "Quality").text = "NOMINAL"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                    pretty_print=True))
    return path
