"""bench/kernels.py runs on CPU, with the twins and with Triton's interpreter."""

import importlib.util
import sys
from pathlib import Path

import pytest
from kernel_testing import INTERPRET
from schedc.kernels import _dispatch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "kernels.py"
KERNELS = {
    "accumulate bf16", "accumulate fp32", "accumulate bf16 +zero +sqnorm", "adamw",
    "adamw +stash", "adamw +stash +lookahead +ef", "sgd nesterov +stash", "copy fp32->bf16",
    "swap fp32", "STEP adamw +stash +1/count",
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("schedc_bench_kernels", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_bench_with_twins(bench, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = bench.main(["--device", "cpu", "--min-size", "1MB", "--max-size", "1MB",
                       "--repeats", "2"])
    assert {r["kernel"] for r in rows} == KERNELS
    assert all(r["fused_gbps"] > 0 and r["copy_gbps"] > 0 for r in rows)
    stash = next(r for r in rows if r["kernel"] == "adamw +stash")
    assert stash["bytes"] == 32 and "AdamW(fused=True)+stash copy" in stash["all_unfused"]
    step = next(r for r in rows if r["kernel"] == "STEP adamw +stash +1/count")
    assert step["bytes"] == 32 and "copy, div_, adamw, zero_ (before)" in step["all_unfused"]
    out = capsys.readouterr().out
    assert "torch twins" in out and "not the target" in out


@pytest.mark.skipif(not _dispatch.triton_available(), reason="triton is not importable")
def test_bench_through_interpreter(bench, monkeypatch, capsys):
    if not INTERPRET:  # kernels compiled for a GPU cannot be interpreted afterwards
        pytest.skip("TRITON_INTERPRET=0: the kernels were compiled, not interpreted")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rows = bench.main(["--device", "cpu", "--min-size", "16KB", "--max-size", "16KB",
                       "--repeats", "1", "--launches", "2", "--only", "adamw +stash,copy"])
    assert [r["kernel"] for r in rows] == ["adamw +stash", "adamw +stash +lookahead +ef",
                                           "STEP adamw +stash +1/count", "copy fp32->bf16"]
    assert "fused = Triton" in capsys.readouterr().out


def test_parse_size(bench):
    assert bench.parse_size("64MB") == 64 << 20
    assert bench.parse_size("1gb") == 1 << 30
    assert bench.parse_size("4096") == 4096
    assert bench.sizes(1 << 20, 1 << 30) == [1 << s for s in (20, 22, 24, 26, 28, 30)]
