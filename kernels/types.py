"""Result types shared by the kernels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Correlation:
    """Per-window result of a correlator.

    Attributes
    ----------
    drow, dcol
        float32 (n,) displacement in pixels: the feature at (r, c) in the reference is at
        (r + drow, c + dcol) in the secondary image. NaN for failed windows.
    score
        float32 (n,) quality in [0, 1], higher is better; 0 for failed windows.
    snr
        float32 (n,) peak-to-mean ratio of the correlation surface (>= 1); NaN for
        failed windows.

    """

    drow: np.ndarray
    dcol: np.ndarray
    score: np.ndarray
    snr: np.ndarray
