"""The public functions pick Triton or the twin as documented, and import without triton."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from kernel_testing import INTERPRET
from schedc.kernels import _dispatch, accumulate, adamw_step, copy_, sgd_step, swap_, use_triton

# By module path: the package's `accumulate` attribute is the function, not the module.
MODULES = [
    importlib.import_module(f"schedc.kernels.{name}")
    for name in ("accumulate", "optim_step", "versions")
]


def _call_every_public_function() -> None:
    n = 5
    z = lambda dtype=torch.float32: torch.zeros(n, dtype=dtype)
    accumulate(z(), z(torch.bfloat16), return_sqnorm=True)
    adamw_step(z(), z(), z(), z(), step=1, lr=1e-3, stash_out=z())
    sgd_step(z(), z(), z(), lr=0.1, momentum=0.9, lookahead_out=z())
    copy_(z(torch.bfloat16), z())
    swap_(z(), z())


@pytest.fixture
def triton_calls(monkeypatch) -> list[str]:
    """Record each hand-over to a Triton module, still running it."""
    calls: list[str] = []

    def spy(name):
        calls.append(name)
        return _dispatch.load_triton_module(name)

    for mod in MODULES:
        monkeypatch.setattr(mod, "load_triton_module", spy)
    return calls


def test_cpu_tensors_use_twins_without_interpreter(monkeypatch, triton_calls):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not use_triton(torch.zeros(1))
    _call_every_public_function()
    assert triton_calls == []


def test_cpu_tensors_use_triton_under_interpreter(monkeypatch, triton_calls):
    if not _dispatch.triton_available():
        pytest.skip("triton is not importable")
    if not INTERPRET:  # Triton decides at decoration: compiled kernels take no CPU tensor
        pytest.skip("TRITON_INTERPRET=0: the kernels were compiled, not interpreted")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    _call_every_public_function()
    assert triton_calls == [
        "_tl_accumulate", "_tl_optim", "_tl_optim", "_tl_versions", "_tl_versions"
    ]


def test_no_triton_means_twins(monkeypatch, triton_calls):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    assert not use_triton(torch.zeros(1))
    _call_every_public_function()
    assert triton_calls == []


def test_use_triton_rules(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not use_triton()  # nothing to run on
    assert not use_triton(None, None)
    assert not use_triton(torch.zeros(1, device="meta"))  # neither CUDA nor CPU
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not use_triton(torch.zeros(1))


_WITHOUT_TRITON = textwrap.dedent(
    """
    import os, sys
    sys.modules["triton"] = None  # makes `import triton` raise ImportError
    os.environ["TRITON_INTERPRET"] = "1"
    import torch
    import schedc.kernels as K
    assert not K.triton_available()
    acc = torch.zeros(3)
    assert float(K.accumulate(acc, torch.ones(3), return_sqnorm=True)) == 3.0
    print("ok")
    """
)


def test_import_and_run_without_triton():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-c", _WITHOUT_TRITON]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_does_not_import_triton():
    code = "import sys, schedc.kernels; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_launch_is_marked_only_while_a_profiler_records():
    from schedc.kernels._dispatch import launching

    assert not isinstance(launching("k"), torch.profiler.record_function)
    with torch.profiler.profile():
        assert isinstance(launching("k"), torch.profiler.record_function)


@pytest.mark.parametrize("buffers,names", [
    (lambda x: dict(p=x, g=x), "p and g"),
    (lambda x: dict(p=x[:50], g=x[40:60]), "p and g"),
    (lambda x: dict(a=x[:10], b=x[10:20], c=x[5:6]), "a and c"),  # not neighbours by name
    (lambda x: dict(a=x[20:30], b=x[:100]), "b and a"),  # one inside another
    (lambda x: dict(a=x[:10], b=x[10:20], c=torch.zeros(3), d=None, e=x[0:0]), None),
])
def test_check_disjoint_finds_every_overlap(buffers, names):
    from schedc.kernels._dispatch import check_disjoint

    x = torch.zeros(100)
    if names is None:
        check_disjoint(**buffers(x))
    else:
        with pytest.raises(ValueError, match=f"^{names} overlap$"):
            check_disjoint(**buffers(x))
