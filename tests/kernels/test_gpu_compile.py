"""Every kernel compiles for an H100 (sm_90) without a GPU, streaming memory in 16-byte
vectors (whatever the buffer's length: an unmasked body and a masked tail) and using
correctly rounded division and square root.

This checks the compiled path the interpreter never takes; speed itself needs a GPU
(bench/kernels.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from schedc.kernels import _dispatch

SCRIPT = Path(__file__).with_name("aot_compile.py")


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    if not _dispatch.triton_available():
        pytest.skip("triton is not importable")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # today's default, set to silence its warning
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         env=env, timeout=300)
    if out.returncode != 0 and "ptxas" in out.stderr and "not found" in out.stderr:
        pytest.skip("this triton install has no ptxas")
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_every_variant_compiles(compiled):
    assert {r["kernel"] for r in compiled} == {
        "_accumulate_kernel", "_adamw_kernel", "_sgd_kernel", "_copy_kernel", "_swap_kernel"
    }
    assert len(compiled) == 2 * 15  # each with and without the size's divisibility hint


def test_memory_access_is_vectorized(compiled):
    for r in (r for r in compiled if r["n_hint"]):  # a length that is a multiple of 16
        assert r["loads"] == ["ld.global.v4.b32"], r
        # The squared-norm partial is one scalar store per block; all else is vectors.
        assert set(r["stores"]) - {"st.global.b32"} == {"st.global.v4.b32"}, r
        if r["kernel"] != "_accumulate_kernel":
            assert r["stores"] == ["st.global.v4.b32"], r


def test_any_length_streams_vectors_in_the_body(compiled):
    """Without the hint (a runtime buffer of any length: sums of parameter sizes), the
    unmasked body still moves 16-byte vectors; only the masked tail block goes scalar."""
    unhinted = [r for r in compiled if not r["n_hint"]]
    assert len(unhinted) == 15
    for r in unhinted:
        assert "ld.global.v4.b32" in r["loads"], r
        assert "st.global.v4.b32" in r["stores"], r


def test_division_and_sqrt_are_correctly_rounded(compiled):
    adamw = [r for r in compiled if r["kernel"] == "_adamw_kernel"]
    assert adamw and all(r["div_sqrt"] == ["div.rn.f32", "sqrt.rn.f32"] for r in adamw)
    assert not any("approx" in op or "full" in op for r in compiled for op in r["div_sqrt"])
