"""accumulate's options for a training step's ACC: `overwrite` (the first ACC after a
STEP writes instead of adding) and `flag` (NaN/Inf noted on the device, one int32
slot per ACC, read once per step). Kernel (Triton's interpreter on CPU) and twin,
bit for bit."""

import pytest
import torch
from kernel_testing import SIZES, assert_bitwise, randn
from schedc.kernels import accumulate, accumulate_ref


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_overwrite_equals_adding_to_zeros_bitwise(device, n, dtype):
    grad = randn(n, dtype, device, seed=2)
    if n:
        grad[0] = -0.0  # 0 + -0 is +0: overwrite must give what the add gave
    expected = torch.zeros(n, device=device)
    accumulate_ref(expected, grad.clone(), scale=0.5)
    for fn in (accumulate, accumulate_ref):
        acc = torch.full((n,), float("nan"), device=device)  # stale: never read
        g = grad.clone()
        fn(acc, g, scale=0.5, overwrite=True, zero_source=True)
        assert_bitwise(acc, expected)
        assert_bitwise(g, torch.zeros_like(g))


@pytest.mark.parametrize("bad", [None, "nan", "inf", "-inf"])
@pytest.mark.parametrize("where", [0, 1500, 4098])
def test_flag_marks_a_non_finite_gradient(device, bad, where):
    results = []
    for fn in (accumulate, accumulate_ref):
        grad = randn(4099, device=device, seed=3)
        if bad:
            grad[where] = float(bad)
        flag = torch.tensor([0, 5, 9, 0], dtype=torch.int32, device=device)
        acc = torch.zeros(4099, device=device)
        fn(acc, grad, flag=flag, flag_slot=1, flag_tag=7)
        results.append((acc, flag))
    (acc, flag), (acc_ref, flag_ref) = results
    assert_bitwise(acc, acc_ref)
    assert torch.equal(flag, flag_ref)
    expected = [0, 7 if bad else 5, 9, 0]  # max(old, tag) in the slot, others untouched
    assert flag.tolist() == expected


def test_flag_keeps_a_larger_tag(device):
    grad = torch.full((100,), float("nan"), device=device)
    for fn in (accumulate, accumulate_ref):
        flag = torch.tensor([9], dtype=torch.int32, device=device)
        fn(torch.zeros(100, device=device), grad.clone(), flag=flag, flag_slot=0, flag_tag=4)
        assert flag.tolist() == [9]


def test_flag_arguments_are_checked():
    acc, g = torch.zeros(8), torch.zeros(8)
    with pytest.raises(TypeError):
        accumulate(acc, g, flag=torch.zeros(2))
    with pytest.raises(ValueError, match="flag_slot"):
        accumulate(acc, g, flag=torch.zeros(2, dtype=torch.int32), flag_slot=2)
