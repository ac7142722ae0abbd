"""The async-sparse exchange packs its rotating window with one or two slices:
the same bytes, in the same order, as block by block."""

import pytest
import torch
from schedc.runtime.dp_sparse import subset_blocks, subset_window, window_slices


def _packed_by_blocks(x, block, blocks):
    n = x.numel()
    return torch.cat([x[j * block : min((j + 1) * block, n)] for j in blocks])


@pytest.mark.parametrize("numel", [64, 1000, 4099])
@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5, 0.7, 1.0])
def test_slices_pack_the_window_like_its_blocks(numel, fraction):
    block = 64
    x = torch.arange(numel, dtype=torch.float32)
    num_blocks = -(-numel // block)
    for index in range(12):
        lo, count = subset_window(num_blocks, fraction, index)
        slices = window_slices(numel, block, lo, count)
        assert 1 <= len(slices) <= 2
        packed = torch.cat([x[a:b] for a, b in slices])
        assert torch.equal(packed, _packed_by_blocks(x, block, subset_blocks(
            num_blocks, fraction, index)))
