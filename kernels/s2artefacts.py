"""Push-broom artefacts of a correlated displacement field: along-track jitter, detector offsets.

A push-broom sensor such as Sentinel-2 MSI images the ground with a row of detectors
(12 for MSI, each a few thousand pixels wide, their footprints long strips parallel to the
ground track) while the platform moves. Two artefacts survive in a displacement field
measured by correlating two such images:

* **jitter**: small attitude oscillations of either platform shift whole image lines;
  in the pair's field this is a function of the along-track position only, common to
  all columns (low-frequency sinusoids of a few tenths of a pixel);
* **detector offsets**: each detector's focal-plane position is known with a residual
  error, so each detector footprint carries its own constant shift; the field has steps
  at the footprint boundaries, which are lines parallel to the track.

Model, per displacement component ``c`` and window ``(i, j)`` of a regular grid::

    f_c(i, j) = D_c(i, j) + J_c(a(i, j)) + O_c[L(i, j)] + noise

with ``D`` the ground deformation (zero on stable ground), ``a = i cos(t) + j sin(t)`` the
along-track coordinate (``t``: angle of the track from the grid's row axis, clockwise
towards the columns), ``J`` the jitter profile and ``O`` one constant per detector label
``L``. On the windows of stable ground, ``J`` and ``O`` are fitted by backfitting with
robust (median) steps: per detector the median of ``f - J``, per along-track bin the
median of ``f - O`` (then smoothed), alternately; windows whose residual is further than
``reject_k`` NMADs from zero in any component (the deforming zone, mismatches) are then
dropped and the fit repeated. The mean of ``J`` is put into ``O`` so that the split is
unique. Detector labels come from footprints (the caller rasterises them) or from
:func:`estimate_detector_boundaries`, which finds the steps of the across-track profile
of the field by optimal partitioning. Consistency checks drop a jitter that is not common
to all columns and detector offsets that are not constant along the track (ground motion
fitted as artefacts); they cannot tell a scene-wide motion that happens to look like
artefacts from them: that needs stable ground.

Everything works on grids of window results (``(n_comp, ny, nx)`` float arrays, NaN =
no measurement); units are those of the input (pixels in GDM-OPT).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "ArtefactFit",
    "detector_labels",
    "estimate_artefacts",
    "estimate_detector_boundaries",
    "track_angle_from_labels",
    "track_coordinates",
]

_NMAD = 1.4826


@dataclass(frozen=True)
class ArtefactFit:
    """Result of :func:`estimate_artefacts`.

    Attributes
    ----------
    correction
        float64 ``(n_comp, ny, nx)`` artefact field ``J + O`` at every window (zero
        where nothing could be estimated); subtract it from the field.
    jitter
        float64 ``(n_comp, n_bins)`` along-track profile ``J`` at along-track positions
        ``along0 + k`` (zeros when jitter is not estimated).
    along0
        Along-track coordinate of the first bin of ``jitter``.
    labels
        int64 ``(n_labels,)`` detector labels found on stable ground.
    offsets
        float64 ``(n_comp, n_labels)`` constant of each label ``O`` (the global
        offset when there is one label).
    counts
        int64 ``(n_labels,)`` stable windows used per label.
    used
        bool ``(ny, nx)`` windows used in the final fit (stable ground, not rejected).
    jitter_amplitude
        float64 ``(n_comp,)`` half of the 2nd-98th percentile range of ``J``: the
        amplitude of the oscillation.
    residual_nmad
        float64 ``(n_comp,)`` NMAD of the corrected field on the windows used.
    boundaries
        float64 across-track coordinates of the detector boundaries found when
        ``find_detectors`` was asked (else empty).

    """

    correction: np.ndarray
    jitter: np.ndarray
    along0: float
    labels: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    used: np.ndarray
    jitter_amplitude: np.ndarray
    residual_nmad: np.ndarray
    boundaries: np.ndarray
    rejected: tuple[str, ...] = ()
    """Parts of the model dropped by the consistency checks: ``"jitter"`` (not common to
    all columns), ``"detectors"`` (offsets not constant along the track)."""


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _fields(fields: object) -> np.ndarray:
    if not isinstance(fields, np.ndarray):
        raise ValueError(f"fields must be a numpy array, got {type(fields).__name__}")
    if not np.issubdtype(fields.dtype, np.floating):
        raise ValueError(f"fields must be float, got {fields.dtype}")
    if fields.ndim == 2:
        fields = fields[None]
    if fields.ndim != 3 or 0 in fields.shape:
        raise ValueError(f"fields must have shape (n_comp, ny, nx) or (ny, nx), got {fields.shape}")
    return np.asarray(fields, np.float64)


def _mask(name: str, mask: object, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise ValueError(f"{name} must be a bool numpy array")
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask


def _real(name: str, value: object, lo: float, hi: float = np.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (np.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return v


def _int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def track_coordinates(shape: tuple[int, int], angle_deg: float = 0.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Along- and across-track coordinates of the cells of a grid, in cell units.

    ``along = i cos(t) + j sin(t)`` and ``across = j cos(t) - i sin(t)`` for the cell
    ``(i, j)``, ``t = angle_deg`` (0: the track runs down the rows, across-track is the
    column axis).
    """
    ny, nx = shape
    t = np.deg2rad(_real("angle_deg", angle_deg, -90.0, 90.0))
    i, j = np.mgrid[0:ny, 0:nx].astype(np.float64)
    return i * np.cos(t) + j * np.sin(t), j * np.cos(t) - i * np.sin(t)


def detector_labels(shape: tuple[int, int], boundaries: np.ndarray,
                    angle_deg: float = 0.0) -> np.ndarray:
    """Label the cells of a grid by the detector strip they fall in.

    Parameters
    ----------
    shape
        ``(ny, nx)``.
    boundaries
        Sorted across-track coordinates (cell units, see :func:`track_coordinates`) of
        the boundaries between strips.
    angle_deg
        Track angle.

    Returns
    -------
    np.ndarray
        int64 ``(ny, nx)`` labels ``0 .. len(boundaries)``.

    """
    b = np.asarray(boundaries, np.float64).ravel()
    if not np.all(np.isfinite(b)) or np.any(np.diff(b) < 0):
        raise ValueError("boundaries must be finite and sorted")
    _, across = track_coordinates(shape, angle_deg)
    return np.searchsorted(b, across, side="right").astype(np.int64)


# --------------------------------------------------------------------------------------
# Robust group statistics
# --------------------------------------------------------------------------------------


def _group_median(groups: np.ndarray, values: np.ndarray, n_groups: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` per integer group ``0 .. n_groups-1`` (NaN if empty); counts."""
    med = np.full(n_groups, np.nan)
    counts = np.bincount(groups, minlength=n_groups)
    if values.size == 0:
        return med, counts
    order = np.lexsort((values, groups))
    v = values[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    med[has] = 0.5 * (v[lo] + v[hi])
    return med, counts


def _smooth_profile(prof: np.ndarray, counts: np.ndarray, sigma: float, min_count: int
                    ) -> np.ndarray:
    """Count-weighted Gaussian smoothing of a profile; bins without support interpolated."""
    ok = np.isfinite(prof) & (counts >= min_count)
    out = np.zeros_like(prof)
    if not ok.any():
        return out
    x = np.arange(prof.size, dtype=np.float64)
    if sigma > 0:
        w = np.where(ok, np.sqrt(counts.astype(np.float64)), 0.0)
        half = int(np.ceil(4 * sigma))
        k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
        num = np.convolve(np.where(ok, prof, 0.0) * w, k, mode="same")
        den = np.convolve(w, k, mode="same")
        good = den > 1e-9 * max(float(den.max()), 1e-300)
        out[good] = num[good] / den[good]
        ok = good
    else:
        out[ok] = prof[ok]
    if not ok.all():
        out[~ok] = np.interp(x[~ok], x[ok], out[ok])
    return out


# --------------------------------------------------------------------------------------
# Detector boundaries from the across-track profile
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _partition(z: np.ndarray, min_width: int, min_edge: int, penalty: float) -> np.ndarray:
    """Optimal partition of the rows of ``z`` (n, m) into constant segments (L2 + penalty).

    Inner segments are at least ``min_width`` rows long, the first and the last at least
    ``min_edge`` (a strip cut by the edge of the image). Returns the start index of every
    segment after the first.
    """
    n, m = z.shape
    s1 = np.zeros((n + 1, m))
    s2 = np.zeros(n + 1)
    for k in range(n):
        acc = 0.0
        for c in range(m):
            s1[k + 1, c] = s1[k, c] + z[k, c]
            acc += z[k, c] * z[k, c]
        s2[k + 1] = s2[k] + acc
    best = np.full(n + 1, np.inf)
    prev = np.full(n + 1, -1, np.int64)
    best[0] = -penalty
    for e in range(1, n + 1):
        for s in range(0, e):
            if not np.isfinite(best[s]):
                continue
            length = e - s
            need = min_edge if (s == 0 or e == n) else min_width
            if length < need:
                continue
            cost = s2[e] - s2[s]
            for c in range(m):
                d = s1[e, c] - s1[s, c]
                cost -= d * d / length
            total = best[s] + cost + penalty
            if total < best[e]:
                best[e] = total
                prev[e] = s
    cuts = []
    e = n
    while e > 0 and prev[e] > 0:
        e = int(prev[e])
        cuts.append(e)
    out = np.empty(len(cuts), np.int64)
    for k in range(len(cuts)):
        out[k] = cuts[len(cuts) - 1 - k]
    return out


def estimate_detector_boundaries(
    fields: np.ndarray,
    usable: np.ndarray,
    *,
    angle_deg: float = 0.0,
    min_width: int = 8,
    min_step: float = 0.05,
    min_edge: int = 3,
    min_count: int = 5,
    noise_floor: float = 0.01,
    penalty: float = 4.0,
) -> np.ndarray:
    """Find detector boundaries as steps of the across-track profile of the field.

    The field (each component) is reduced to a profile across the track: the median of
    the usable windows in each across-track bin of one cell, after removing the
    along-track profile (median per along-track bin) so that jitter does not leak in.
    The profile is cut into constant segments at least ``min_width`` bins wide by optimal
    partitioning (least squares, all components together, each scaled by its noise: the
    NMAD of the profile's first differences over sqrt(2), at least ``noise_floor``), with
    a cost of ``penalty * n_comp * log(n_bins)`` per cut; then cuts whose step is below
    ``min_step`` in every component are merged away, weakest first.

    Parameters
    ----------
    fields
        float ``(n_comp, ny, nx)`` or ``(ny, nx)``; NaN = no measurement.
    usable
        bool ``(ny, nx)``: windows of stable ground that may be used.
    angle_deg
        Track angle (see :func:`track_coordinates`).
    min_width
        Narrowest detector strip, cells (>= 2).
    min_step
        Smallest detector step kept, units of the field (>= 0).
    min_edge
        Narrowest strip at either edge (cut by the edge of the image), cells (>= 1).
    min_count
        Across-track bins with fewer usable windows are ignored.
    noise_floor
        Lower bound of the profile noise (> 0), units of the field.
    penalty
        Cost of a cut relative to ``n_comp * log(n_bins)`` noise variances (> 0).

    Returns
    -------
    np.ndarray
        float64 sorted across-track coordinates of the boundaries (may be empty); feed
        them to :func:`detector_labels`.

    Raises
    ------
    ValueError
        On wrong inputs.

    """
    f = _fields(fields)
    nc, ny, nx = f.shape
    use = _mask("usable", usable, (ny, nx)) & np.all(np.isfinite(f), axis=0)
    min_width = _int("min_width", min_width, 2)
    min_edge = min(_int("min_edge", min_edge, 1), min_width)
    min_step = _real("min_step", min_step, 0.0)
    min_count = _int("min_count", min_count, 1)
    noise_floor = _real("noise_floor", noise_floor, 1e-12)
    penalty = _real("penalty", penalty, 1e-12)
    along, across = track_coordinates((ny, nx), angle_deg)
    if not use.any():
        return np.zeros(0)
    ab = np.rint(along[use] - along[use].min()).astype(np.int64)
    cb = np.rint(across[use] - across[use].min()).astype(np.int64)
    c0 = float(across[use].min())
    n_a = int(ab.max()) + 1
    n_c = int(cb.max()) + 1
    prof = np.full((n_c, nc), np.nan)
    cnt = np.zeros(n_c, np.int64)
    for c in range(nc):
        v = f[c][use]
        rowmed, _ = _group_median(ab, v, n_a)
        prof[:, c], cnt = _group_median(cb, v - rowmed[ab], n_c)
    keep = np.flatnonzero((cnt >= min_count) & np.all(np.isfinite(prof), axis=1))
    if keep.size < 2 * min_edge:
        return np.zeros(0)
    z = prof[keep]
    sig = np.empty(nc)
    for c in range(nc):
        d = np.diff(z[:, c])
        sig[c] = max(_NMAD * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0),
                     noise_floor)
    zs = np.ascontiguousarray(z / sig)
    cuts = list(_partition(zs, min_width, min_edge, penalty * nc * np.log(keep.size)))
    # Merge weak steps, the weakest first.
    while cuts:
        edges = [0, *cuts, keep.size]
        means = [z[edges[k]:edges[k + 1]].mean(axis=0) for k in range(len(edges) - 1)]
        steps = [float(np.max(np.abs(means[k + 1] - means[k]))) for k in range(len(cuts))]
        k = int(np.argmin(steps))
        if steps[k] >= min_step:
            break
        cuts.pop(k)
    # A boundary half-way between the last bin of one strip and the first of the next.
    pos = [c0 + 0.5 * (keep[k - 1] + keep[k]) for k in cuts]
    return np.asarray(pos, np.float64)


# --------------------------------------------------------------------------------------
# Joint fit
# --------------------------------------------------------------------------------------


def estimate_artefacts(
    fields: np.ndarray,
    usable: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    jitter: bool = True,
    angle_deg: float = 0.0,
    smooth: float = 1.0,
    reject_k: float = 4.0,
    min_count: int = 3,
    min_label_count: int = 10,
    iterations: int = 4,
    find_detectors: bool = False,
    min_width: int = 8,
    min_step: float = 0.05,
    consistency: float | None = 0.5,
    noise_floor: float = 0.02,
) -> ArtefactFit:
    """Fit along-track jitter and per-detector offsets on stable ground.

    Parameters
    ----------
    fields
        float ``(n_comp, ny, nx)`` or ``(ny, nx)`` displacement components on a grid of
        windows; NaN = no measurement.
    usable
        bool ``(ny, nx)``: windows that may be stable ground (valid, good score, outside a
        known deforming zone). Deforming windows left in are rejected by the fit.
    labels
        int ``(ny, nx)`` detector label of each window (any integers, negative = unknown),
        or None for a single label (then the offsets are one global offset).
    jitter
        Fit the along-track profile ``J`` (False: detector offsets only).
    angle_deg
        Track angle (see :func:`track_coordinates`).
    smooth
        Gaussian sigma of the smoothing of ``J``, in along-track cells (0: none). It
        keeps ``exp(-2 pi^2 smooth^2 / P^2)`` of an oscillation of period ``P`` cells.
    reject_k
        Windows whose corrected value is beyond ``reject_k`` NMADs in any component are
        treated as deforming and left out of the next fit (> 0).
    min_count
        Along-track bins with fewer windows are interpolated from their neighbours.
    min_label_count
        Labels with fewer stable windows get no offset (0).
    iterations
        Rejection rounds (>= 1); each round runs a few backfitting sweeps.
    find_detectors
        With ``labels`` None: find the detector boundaries on the usable windows with
        :func:`estimate_detector_boundaries` (``min_width``, ``min_step``), fit with those
        strips (which rejects the deforming zone), find the boundaries again on the
        windows kept and fit again.
    min_width, min_step
        See :func:`estimate_detector_boundaries`.
    consistency
        Guard against fitting ground motion as artefacts (None: no check). Jitter must be
        common to all columns: it is fitted again on three strips across the track, and
        dropped when their RMS disagreement with ``J`` exceeds ``consistency`` times the
        RMS of ``J``. Detector offsets must be constant along the track: they are fitted
        again on three blocks along it, and dropped (one global offset instead) when the
        RMS disagreement exceeds ``consistency`` times the RMS spread of the offsets. A
        part whose RMS is below ``noise_floor`` is never dropped (it is harmless).
    noise_floor
        See ``consistency``; units of the field.

    Returns
    -------
    ArtefactFit

    Raises
    ------
    ValueError
        On wrong inputs, or when fewer than ``min_label_count`` windows are usable.

    """
    f = _fields(fields)
    nc, ny, nx = f.shape
    if find_detectors and labels is None:
        # Boundaries on every usable window (the along-track medians inside resist a
        # local deforming zone), a fit with them that rejects the deforming zone, then
        # the boundaries again on the windows it kept, and the final fit.
        opts = {"jitter": jitter, "angle_deg": angle_deg, "smooth": smooth,
                "reject_k": reject_k, "min_count": min_count,
                "min_label_count": min_label_count, "iterations": iterations,
                "consistency": consistency, "noise_floor": noise_floor}
        keep = np.asarray(usable)
        found = np.zeros(0)
        for _ in range(2):
            found = estimate_detector_boundaries(f, keep, angle_deg=angle_deg,
                                                 min_width=min_width, min_step=min_step)
            fit = estimate_artefacts(f, usable, detector_labels((ny, nx), found, angle_deg),
                                     **opts)  # type: ignore[arg-type]
            keep = fit.used
            if "detectors" in fit.rejected:
                found = np.zeros(0)
                break
        return ArtefactFit(**{**fit.__dict__, "boundaries": found})
    base = _mask("usable", usable, (ny, nx)) & np.all(np.isfinite(f), axis=0)
    angle_deg = _real("angle_deg", angle_deg, -90.0, 90.0)
    smooth = _real("smooth", smooth, 0.0, 1e6)
    reject_k = _real("reject_k", reject_k, 1e-6)
    min_count = _int("min_count", min_count, 1)
    min_label_count = _int("min_label_count", min_label_count, 1)
    iterations = _int("iterations", iterations, 1)
    if labels is None:
        lab = np.zeros((ny, nx), np.int64)
    else:
        if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("labels must be an integer numpy array or None")
        if labels.shape != (ny, nx):
            raise ValueError(f"labels must have shape {(ny, nx)}, got {labels.shape}")
        lab = labels.astype(np.int64)
    n_base = int(np.count_nonzero(base))
    if n_base < min_label_count:
        raise ValueError(
            f"only {n_base} usable windows; at least {min_label_count} are needed"
        )
    along, _ = track_coordinates((ny, nx), angle_deg)
    along0 = float(np.floor(along.min()))
    abin = np.rint(along - along0).astype(np.int64)
    n_bins = int(abin.max()) + 1
    uniq, lab_idx = np.unique(lab, return_inverse=True)
    lab_idx = lab_idx.reshape(ny, nx)
    known = lab >= 0
    n_lab = uniq.size

    use = base.copy()
    jit = np.zeros((nc, n_bins))
    off = np.zeros((nc, n_lab))
    counts = np.zeros(n_lab, np.int64)
    for _ in range(iterations):
        b = abin[use]
        li = lab_idx[use]
        lk = known[use]
        for _sweep in range(6):
            for c in range(nc):
                v = f[c][use]
                if jitter:
                    r = v - np.where(lk, off[c][li], 0.0)
                    prof, cnt = _group_median(b, r, n_bins)
                    jit[c] = _smooth_profile(prof, cnt, smooth, min_count)
                v2 = v - jit[c][b]
                med, counts = _group_median(li[lk], v2[lk], n_lab)
                off[c] = np.where(counts >= min_label_count, np.nan_to_num(med), 0.0)
            if jitter:
                # Put the mean of J into the offsets: the split is then unique.
                shift = np.average(jit, axis=1, weights=np.bincount(b, minlength=n_bins)
                                   + 1e-12)
                jit -= shift[:, None]
                off += shift[:, None]
        corr = jit[:, abin] + np.where(known, off[:, lab_idx], 0.0)
        res = f - corr
        bad = np.zeros((ny, nx), np.bool_)
        for c in range(nc):
            rc = res[c][use]
            nm = max(_NMAD * float(np.median(np.abs(rc - np.median(rc)))), 1e-12)
            with np.errstate(invalid="ignore"):
                bad |= ~(np.abs(res[c] - np.median(rc)) <= reject_k * nm)
        new_use = base & ~bad
        if np.count_nonzero(new_use) < min_label_count or np.array_equal(new_use, use):
            break
        use = new_use
    corr = np.zeros((nc, ny, nx))
    for c in range(nc):
        corr[c] = np.interp(along - along0, np.arange(n_bins), jit[c]) if jitter else 0.0
        corr[c] += np.where(known, off[c][lab_idx], 0.0)
    res = f - corr
    nmad = np.array([_NMAD * float(np.median(np.abs(r[use] - np.median(r[use]))))
                     for r in res])
    if jitter and n_bins > 1:
        amp = 0.5 * (np.percentile(jit, 98, axis=1) - np.percentile(jit, 2, axis=1))
    else:
        amp = np.zeros(nc)
    _, counts = _group_median(lab_idx[use & known], np.zeros(int(np.count_nonzero(
        use & known))), n_lab)
    fit = ArtefactFit(correction=corr, jitter=jit, along0=along0, labels=uniq, offsets=off,
                      counts=counts, used=use, jitter_amplitude=amp, residual_nmad=nmad,
                      boundaries=np.zeros(0))
    if consistency is None:
        return fit
    consistency = _real("consistency", consistency, 0.0)
    noise_floor = _real("noise_floor", noise_floor, 0.0)
    opts = {"angle_deg": angle_deg, "smooth": smooth, "reject_k": reject_k,
            "min_count": min_count, "min_label_count": min_label_count,
            "iterations": iterations, "consistency": consistency, "noise_floor": noise_floor}
    _, across = track_coordinates((ny, nx), angle_deg)
    if jitter and _jitter_disagrees(f, use, abin, n_bins, known, lab_idx, off, jit, across,
                                    smooth, min_count, consistency, noise_floor):
        refit = estimate_artefacts(f, usable, labels, jitter=False, **opts)  # type: ignore[arg-type]
        return ArtefactFit(**{**refit.__dict__, "rejected": ("jitter", *refit.rejected)})
    if n_lab > 1 and _offsets_disagree(f, use, abin, n_bins, known, lab_idx, off, jit,
                                       along, min_label_count, consistency, noise_floor):
        refit = estimate_artefacts(f, usable, None, jitter=jitter, **opts)  # type: ignore[arg-type]
        return ArtefactFit(**{**refit.__dict__,
                              "rejected": (*fit.rejected, "detectors", *refit.rejected)})
    return fit


def _thirds(x: np.ndarray) -> np.ndarray:
    """Block 0, 1 or 2 of each value: the terciles of ``x``."""
    return np.searchsorted(np.quantile(x, [1 / 3, 2 / 3]), x, side="right")


def _jitter_disagrees(f: np.ndarray, use: np.ndarray, abin: np.ndarray, n_bins: int,
                      known: np.ndarray, lab_idx: np.ndarray, off: np.ndarray,
                      jit: np.ndarray, across: np.ndarray, smooth: float, min_count: int,
                      consistency: float, noise_floor: float) -> bool:
    """Whether the along-track profile differs between three strips across the track."""
    blk = _thirds(across[use])
    b = abin[use]
    diffs, sig = [], []
    for c in range(f.shape[0]):
        v = f[c][use] - np.where(known[use], off[c][lab_idx[use]], 0.0)
        for k in range(3):
            sel = blk == k
            prof, cnt = _group_median(b[sel], v[sel], n_bins)
            ok = np.isfinite(prof) & (cnt >= min_count)
            if np.count_nonzero(ok) < 3:
                continue
            jb = _smooth_profile(prof, cnt, smooth, min_count)
            d = (jb - jit[c])[ok]
            diffs.append(d - np.median(d))
            sig.append(jit[c][ok])
    if not diffs:
        return False
    s = float(np.sqrt(np.mean(np.concatenate(sig) ** 2)))
    d = float(np.sqrt(np.mean(np.concatenate(diffs) ** 2)))
    return s > noise_floor and d > consistency * s


def _offsets_disagree(f: np.ndarray, use: np.ndarray, abin: np.ndarray, n_bins: int,
                      known: np.ndarray, lab_idx: np.ndarray, off: np.ndarray,
                      jit: np.ndarray, along: np.ndarray, min_label_count: int,
                      consistency: float, noise_floor: float) -> bool:
    """Whether the detector offsets differ between three blocks along the track."""
    sel_all = use & known
    if not sel_all.any():
        return False
    blk = _thirds(along[sel_all])
    li = lab_idx[sel_all]
    n_lab = off.shape[1]
    diffs, spread = [], []
    for c in range(f.shape[0]):
        v = f[c][sel_all] - jit[c][abin[sel_all]]
        per = np.full((3, n_lab), np.nan)
        for k in range(3):
            med, cnt = _group_median(li[blk == k], v[blk == k], n_lab)
            per[k] = np.where(cnt >= min_label_count, med, np.nan)
        ok = np.all(np.isfinite(per), axis=0)
        if np.count_nonzero(ok) < 2:
            continue
        d = per[:, ok] - off[c][ok]
        d -= np.median(d, axis=1, keepdims=True)  # a common shift of a block is not a step
        diffs.append(d.ravel())
        spread.append(off[c][ok] - np.median(off[c][ok]))
    if not diffs:
        return False
    s = float(np.sqrt(np.mean(np.concatenate(spread) ** 2)))
    d = float(np.sqrt(np.mean(np.concatenate(diffs) ** 2)))
    return s > noise_floor and d > consistency * s


def track_angle_from_labels(labels: np.ndarray, min_cells: int = 20) -> float | None:
    """Angle of the track (degrees, see :func:`track_coordinates`) from detector strips.

    Detector footprints are strips parallel to the track: the boundary between two
    neighbouring labels is a line ``j = j0 + tan(t) i``. The slope is fitted by least
    squares to the first boundary cell of every row, for every pair of labels that meet
    along at least ``min_cells`` rows; None when no boundary is long enough.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or not np.issubdtype(
            labels.dtype, np.integer):
        raise ValueError("labels must be a 2-D integer numpy array")
    left = labels[:, :-1]
    right = labels[:, 1:]
    edge = (left != right) & (left >= 0) & (right >= 0)
    rows, cols = np.nonzero(edge)
    if rows.size == 0:
        return None
    key = left[rows, cols] * (int(labels.max()) + 1) + right[rows, cols]
    slopes, weights = [], []
    for k in np.unique(key):
        sel = key == k
        r, c = rows[sel], cols[sel]
        if np.unique(r).size < min_cells:
            continue
        # One cell per row (the first), so that ragged edges do not count twice.
        _, first = np.unique(r, return_index=True)
        r, c = r[first].astype(np.float64), c[first].astype(np.float64)
        a = np.polyfit(r, c + 0.5, 1)
        slopes.append(a[0])
        weights.append(r.size)
    if not slopes:
        return None
    return float(np.degrees(np.arctan(np.average(slopes, weights=weights))))
