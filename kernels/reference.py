"""Where to put the reference point: a coherent, stable area away from the deformation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["stable_area"]


def stable_area(rate: np.ndarray, valid: np.ndarray | None = None, nsigma: float = 3.0,
                margin: float = 0.05) -> np.ndarray:
    """Pixels that look stable and lie outside the largest deforming area.

    ``rate`` is a rough displacement rate per pixel (any units; NaN = unknown), e.g. a
    stack of the interferograms. Deforming pixels differ from the median rate by more
    than ``nsigma`` robust standard deviations (1.4826 MAD); the largest deforming area
    is the connected group of them with the largest summed ``|rate - median|``, grown by
    ``margin`` of the image diagonal. Returned: pixels within one robust sigma of the
    median, outside that grown area (all valid pixels outside it when none are that
    quiet).

    Raises ValueError for a rate that is not 2-D or has no valid pixel.
    """
    r = np.asarray(rate, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rate must be 2-D, got shape {r.shape}")
    ok = np.isfinite(r)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    if not ok.any():
        raise ValueError("rate has no valid pixel")
    med = float(np.median(r[ok]))
    dev = np.abs(r - med)
    sigma = 1.4826 * float(np.median(dev[ok]))
    if sigma <= 0:
        return ok
    moving = ok & (dev > nsigma * sigma)
    labels, n = ndimage.label(moving)
    far = np.ones(r.shape, bool)
    if n:
        strength = ndimage.sum(np.where(moving, dev, 0.0), labels, index=np.arange(1, n + 1))
        largest = labels == (int(np.argmax(strength)) + 1)
        grow = max(1, int(round(margin * float(np.hypot(*r.shape)))))
        far = ~ndimage.binary_dilation(largest, iterations=grow)
    quiet = ok & far & (dev <= sigma)
    return quiet if quiet.any() else (ok & far if (ok & far).any() else ok)
