"""gdmio.blocks: cores tile the raster exactly once; read windows carry the overlap."""

from __future__ import annotations

import numpy as np
import pytest

from gdmio.blocks import count_blocks, iter_blocks


@pytest.mark.parametrize(
    ("width", "height", "block", "overlap", "align"),
    [
        (1000, 700, 256, 0, 1),
        (1000, 700, 256, 17, 1),
        (513, 1, 100, 5, 1),
        (37, 41, 1000, 8, 1),  # one block, overlap clipped away
        (999, 501, 300, 20, 8),  # 300 -> cores of 296 = 37 windows of step 8
        (64, 64, 5, 2, 16),  # block smaller than align: cores of 16
        (7, 9, 1, 1, 1),
    ],
)
def test_cores_tile_once_and_reads_overlap(
    width: int, height: int, block: int, overlap: int, align: int
) -> None:
    hits = np.zeros((height, width), dtype=np.int32)
    image = np.arange(width * height, dtype=np.int64).reshape(height, width)
    blocks = list(iter_blocks(width, height, block_size=block, overlap=overlap, align=align))
    assert len(blocks) == count_blocks(width, height, block, overlap, align)
    step = max(align, block // align * align)
    for b in blocks:
        core, read = b.core, b.read
        c0, r0, cw, ch = int(core.col_off), int(core.row_off), int(core.width), int(core.height)
        assert c0 % align == 0 and r0 % align == 0
        assert cw == min(step, width - c0) and ch == min(step, height - r0)
        hits[r0:r0 + ch, c0:c0 + cw] += 1
        # Read window = core grown by `overlap` on each side, clipped to the raster.
        assert int(read.col_off) == max(c0 - overlap, 0)
        assert int(read.row_off) == max(r0 - overlap, 0)
        assert int(read.col_off + read.width) == min(c0 + cw + overlap, width)
        assert int(read.row_off + read.height) == min(r0 + ch + overlap, height)
        block_data = image[read.toslices()]
        np.testing.assert_array_equal(block_data[b.core_in_read], image[core.toslices()])
    assert hits.min() == 1 and hits.max() == 1


def test_empty_and_invalid() -> None:
    assert list(iter_blocks(0, 10)) == [] and count_blocks(0, 10) == 0
    with pytest.raises(ValueError, match="block_size"):
        list(iter_blocks(10, 10, block_size=0))
    with pytest.raises(ValueError, match="overlap"):
        list(iter_blocks(10, 10, overlap=-1))
    with pytest.raises(ValueError, match="align"):
        count_blocks(10, 10, align=0)
