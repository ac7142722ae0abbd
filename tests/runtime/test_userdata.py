"""Data hooks: a function, a plain iterable, nanoGPT token files, text files."""

from __future__ import annotations

import numpy as np
import pytest
import schedc.runtime as sr
import torch
import user_model as um
from runtime_testing import assert_same, collect, compile_preset, run_inprocess
from schedc.runtime.data import Batches, load_corpus


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_preset(tmp_path_factory.mktemp("data") / "1f1b", "1f1b", 2, 2)


def _api(d, data, steps=2):
    torch.set_num_threads(1)
    run = sr.Run(d, build_stage=um.build_stage, data=data, loss=um.loss, launcher="local",
                 steps=steps, lr=0.01, threads=1, quiet=True)
    return collect(run.session, list(run.train()))


def test_a_plain_iterable_equals_the_function(prog):
    items = [um.batches(j, 0) for j in range(8)]
    assert_same(_api(prog, items), _api(prog, um.batches))
    assert_same(_api(prog, iter(items)), _api(prog, um.batches))  # an iterator, read once


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_token_files_are_read_like_the_corpus(prog, tmp_path, dtype):
    """A nanoGPT .bin (flat token ids) gives exactly the windows the byte corpus
    gives for the same tokens, and trains the built-in model."""
    tokens = load_corpus()[: 1 << 16].numpy()
    path = tmp_path / f"train.{dtype}.bin"
    tokens.astype(dtype).tofile(path)
    got = sr.TokenFile(path, 2, 16, seed=3, dtype=dtype).get(5)
    want = Batches(torch.from_numpy(tokens.copy()), 2, 16, 3).get(5)
    assert torch.equal(got.inputs, want.inputs) and torch.equal(got.targets, want.targets)
    assert got.inputs.dtype == torch.int64
    res = run_inprocess(prog, "--steps", "2", "--data", str(path), "--token-dtype", dtype)
    assert len(res.losses) == 2 and all(np.isfinite(res.losses))


def test_text_files_still_work(prog, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes(load_corpus()[:20000].tolist()))
    res = run_inprocess(prog, "--steps", "2", "--data", str(path))
    assert len(res.losses) == 2 and res.losses != run_inprocess(prog, "--steps", "2").losses
