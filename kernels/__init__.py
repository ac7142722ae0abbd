"""Fused flat-buffer kernels (installed as ``schedc.kernels``).

Single-pass operations on 1-D contiguous buffers, each a Triton kernel with a
plain-torch twin (``*_ref``). The public function runs Triton for CUDA tensors
or under ``TRITON_INTERPRET=1``, else the twin (see ``_dispatch``). Importing
this package needs neither a GPU nor triton. Bytes moved per element are in
``budget``. Like ``torch.optim`` steps, the updates run under ``torch.no_grad``,
so a buffer may be a leaf that requires grad; buffers given to one call must
not overlap.

- ``accumulate``: ``acc_fp32 += scale * grad`` (or ``acc = scale * grad``),
  optionally zeroing ``grad``, flagging a NaN/Inf on the device and returning
  the squared norm.
- ``adamw_step`` / ``sgd_step``: torch.optim-equal updates of ``grad / grad_div``,
  optionally writing a stash, look-ahead weights and applying error feedback in
  the same pass.

Every kernel runs an unmasked body (16-byte vector loads and stores, whatever
the buffer's length) and a masked tail block; each launch is marked
``schedc::<kernel>`` for the torch profiler.
- ``flatten_params`` / ``repoint``: flat buffers and zero-copy parameter views.
- ``copy_`` / ``swap_``: fused copy (with dtype conversion) and in-place swap.
- ``drift_apply``: asynchronous data parallelism's drift EMA and late sparse
  average (``x[S] = avg[S] + lateness * drift[S]``), over blocks of the buffer.
"""

if __name__ != "schedc.kernels":  # the folder is on sys.path when python starts in the repository
    raise ImportError("this folder installs as schedc.kernels: import schedc.kernels, not kernels")

from . import budget
from ._dispatch import triton_available, use_triton
from .accumulate import accumulate, accumulate_ref
from .optim_step import adamw_step, adamw_step_ref, sgd_step, sgd_step_ref
from .sparse_avg import drift_apply, drift_apply_ref, num_blocks
from .versions import copy_, copy_ref, flatten_params, repoint, swap_, swap_ref

__all__ = [
    "accumulate",
    "accumulate_ref",
    "adamw_step",
    "adamw_step_ref",
    "budget",
    "copy_",
    "copy_ref",
    "drift_apply",
    "drift_apply_ref",
    "flatten_params",
    "num_blocks",
    "repoint",
    "sgd_step",
    "sgd_step_ref",
    "swap_",
    "swap_ref",
    "triton_available",
    "use_triton",
]
