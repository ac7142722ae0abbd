"""Compile every kernel variant for an H100 (sm_90) ahead of time, without a GPU.

Run as a script with TRITON_INTERPRET unset (the interpreter's kernels cannot be
compiled); prints one JSON line per variant with the PTX's global memory
instructions and any division / square root instructions, for test_gpu_compile.
Pointers get the 16-divisibility hints Triton gives aligned buffers at run
time. The size ``n`` gets the hint in one build of each variant (a length
that is a multiple of 16) and not in the other (any length: the unmasked body
must still stream 16-byte vectors, the masked tail may not), so the PTX is what
a launch on the GPU would build in either case.
"""

import json
import os
import re

import triton
from schedc.kernels import _dispatch, _tl_accumulate, _tl_optim, _tl_versions
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

BLOCK = {"BLOCK": _dispatch.BLOCK}
ADAMW_SCALARS = ("decay lerp_w beta2 one_minus_beta2 neg_step_size bc2_sqrt eps la_alpha "
                 "ef_lambda grad_div")
SGD_SCALARS = "neg_lr weight_decay momentum one_minus_dampening la_alpha ef_lambda grad_div"


def _ptrs(names: str, dtype: str = "fp32") -> dict[str, str]:
    return {name: f"*{dtype}" for name in names.split()}


def _scalars(names: str) -> dict[str, str]:
    return {name: "fp32" for name in names.split()}


def variants():
    for g in ("fp32", "bf16", "fp16"):
        sig = {**_ptrs("acc_ptr"), **_ptrs("grad_ptr", g), **_ptrs("partial_ptr"),
               **_ptrs("flag_ptr", "i32"), "n": "i64", "scale": "fp32", "flag_slot": "i32",
               "flag_tag": "i32"}
        for overwrite in (False, True):
            yield _tl_accumulate._accumulate_kernel, sig, {
                "ZERO_SOURCE": True, "SQNORM": g == "bf16", "OVERWRITE": overwrite,
                "FLAG": True}
    for out in ("fp32", "bf16"):
        sig = {**_ptrs("p_ptr g_ptr m_ptr v_ptr"), **_ptrs("stash_ptr la_ptr", out),
               **_ptrs("gprev_ptr"), "n": "i64", **_scalars(ADAMW_SCALARS)}
        yield _tl_optim._adamw_kernel, sig, {"HAS_STASH": True, "HAS_LA": True, "HAS_EF": True,
                                             "HAS_DIV": True}
    for first in (False, True):
        sig = {**_ptrs("p_ptr g_ptr buf_ptr stash_ptr la_ptr gprev_ptr"), "n": "i64",
               **_scalars(SGD_SCALARS)}
        flags = {"HAS_MOMENTUM": True, "FIRST_STEP": first, "NESTEROV": True,
                 "HAS_STASH": True, "HAS_LA": True, "HAS_EF": True, "HAS_DIV": True}
        yield _tl_optim._sgd_kernel, sig, flags
    for dst, src in (("bf16", "fp32"), ("fp32", "bf16"), ("fp16", "bf16"), ("fp32", "fp32")):
        yield _tl_versions._copy_kernel, {**_ptrs("dst_ptr", dst), **_ptrs("src_ptr", src),
                                          "n": "i64"}, {}
    yield _tl_versions._swap_kernel, {**_ptrs("a_ptr b_ptr", "i32"), "n": "i64"}, {}


def compile_one(fn, sig: dict, consts: dict, n_hint: bool = True) -> dict:
    consts = {**consts, **BLOCK}
    hinted = [k for k, v in sig.items() if v.startswith("*") or (k == "n" and n_hint)]
    attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k in hinted}
    src = ASTSource(fn=fn, signature={**sig, **dict.fromkeys(consts, "constexpr")},
                    constexprs=consts, attrs=attrs)
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
    return {
        "kernel": fn.fn.__name__,
        "n_hint": n_hint,
        "sig": sig,
        "loads": sorted(set(re.findall(r"ld\.global\.[\w.]+", ptx))),
        "stores": sorted(set(re.findall(r"st\.global\.[\w.]+", ptx))),
        "div_sqrt": sorted(set(re.findall(r"\b(?:div|sqrt|rcp)\.[\w.]+", ptx))),
    }


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "unset TRITON_INTERPRET"
    for fn, sig, consts in variants():
        for n_hint in (True, False):
            print(json.dumps(compile_one(fn, sig, consts, n_hint)), flush=True)
