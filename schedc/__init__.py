"""schedc: a compiler for pipeline-parallel training schedules.

The compiler (this package) never imports torch or triton; the runtime and
kernels install as `schedc.runtime` and `schedc.kernels`.
"""

__version__ = "0.1.0"
