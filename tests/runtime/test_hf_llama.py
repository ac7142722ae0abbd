"""A model nobody here wrote: HuggingFace's LlamaForCausalLM (random init, 8
layers, d = 256) split into 4 stages (examples/hf_llama.py) trains under 1f1b
and paci, in-process on CPU, with its loss falling."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import schedc.runtime as sr
import torch
from runtime_testing import compile_preset

ROOT = Path(__file__).resolve().parents[2]
# `python -m pytest` puts the repository on sys.path, where transformers' probe
# for an optional package named `kernels` would import our kernels/ folder (which
# refuses to be imported as `kernels`): the installed packages only.
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != ROOT]
pytest.importorskip("transformers", reason="HuggingFace transformers is not installed "
                    "(pip install -e '.[hf]')")
sys.path.insert(0, str(ROOT / "examples"))
import hf_llama  # noqa: E402


@pytest.mark.parametrize("preset", ["1f1b", "paci"])
def test_hf_llama_trains(preset, tmp_path):
    torch.set_num_threads(1)
    d = compile_preset(tmp_path / preset, preset, 4, 4)
    run = sr.Run(d, build_stage=hf_llama.build_stage, data=hf_llama.batches,
                 loss=hf_llama.loss, launcher="local", steps=6, lr=1e-3, threads=1, quiet=True)
    losses = [r["loss"] for r in run.train()]
    assert len(losses) >= 6 and all(r == r for r in losses)
    assert losses[-1] < losses[0] - 1.0, losses  # from ln(512) = 6.2 at random init
