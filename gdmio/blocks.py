"""Cut a raster into blocks so that kernels only ever see arrays of bounded size.

Each :class:`Block` has a *core* (the output pixels it owns; the cores of all blocks
tile the raster exactly once) and a *read* window (the core plus ``overlap`` pixels on
every side, clipped to the raster) for kernels that need context around each pixel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

__all__ = ["Block", "count_blocks", "iter_blocks"]


@dataclass(frozen=True)
class Block:
    """One block of a raster.

    Attributes
    ----------
    read : Window
        Core plus overlap, clipped to the raster: what to read.
    core : Window
        Pixels this block owns in the output.
    core_in_read : tuple of slice
        ``(rows, cols)`` slices of the read array that correspond to the core.

    """

    read: Window
    core: Window
    core_in_read: tuple[slice, slice]


def _step(block_size: int, align: int) -> int:
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    return max(align, (block_size // align) * align)


def _check(width: int, height: int, overlap: int) -> None:
    if width < 0 or height < 0:
        raise ValueError(f"raster size must be non-negative, got {width}x{height}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")


def count_blocks(
    width: int, height: int, block_size: int = 2048, overlap: int = 0, align: int = 1
) -> int:
    """Count the blocks :func:`iter_blocks` yields for the same arguments."""
    _check(width, height, overlap)
    step = _step(block_size, align)
    return math.ceil(width / step) * math.ceil(height / step)


def iter_blocks(
    width: int, height: int, block_size: int = 2048, overlap: int = 0, align: int = 1
) -> Iterator[Block]:
    """Blocks covering a ``width`` x ``height`` raster, row by row.

    Parameters
    ----------
    width, height : int
        Raster size in pixels.
    block_size : int
        Core size (rounded down to a multiple of ``align``, at least ``align``); the last
        block of a row or column is smaller.
    overlap : int
        Pixels of context added on each side of the core in the read window.
    align : int
        Core origins are multiples of ``align`` (keep a regular grid of window centres
        with that step unbroken across blocks).

    Yields
    ------
    Block

    """
    _check(width, height, overlap)
    step = _step(block_size, align)
    for r0 in range(0, height, step):
        r1 = min(r0 + step, height)
        for c0 in range(0, width, step):
            c1 = min(c0 + step, width)
            rr0, rr1 = max(r0 - overlap, 0), min(r1 + overlap, height)
            cc0, cc1 = max(c0 - overlap, 0), min(c1 + overlap, width)
            yield Block(
                read=Window(cc0, rr0, cc1 - cc0, rr1 - rr0),
                core=Window(c0, r0, c1 - c0, r1 - r0),
                core_in_read=(slice(r0 - rr0, r1 - rr0), slice(c0 - cc0, c1 - cc0)),
            )
