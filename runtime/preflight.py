"""Checks of a run against its programs, before any communication.

Everything a rank can check alone is checked here, on every rank, so a
mismatch is one clear message and a non-zero exit everywhere instead of a
hang at the first message. The program files themselves were validated by
the loader (`schedc.files`: schema, hashes, the Spec's shape); world size is
checked by the launcher against torchrun's.
"""

from __future__ import annotations

from schedc.errors import UserError

from .faults import SKIP, check_skip_supported
from .setup import Prepared


def preflight(p: Prepared) -> None:
    where = f"{p.cfg.programs}/manifest.json"
    m = p.manifest
    if len(p.stage_numels) != m.num_stages:
        raise UserError(f"{where}: field 'num_stages': the model {p.cfg.model} was split into "
                        f"{len(p.stage_numels)} stages, the programs have {m.num_stages}")
    empty = [s for s, n in enumerate(p.stage_numels) if n == 0]
    if empty:
        raise UserError(f"{where}: field 'num_stages': {m.num_stages} stages leave stage "
                        f"{empty[0]} of model {p.cfg.model} without parameters (too few layers "
                        "for this many stages): compile for fewer stages or use a larger model")
    if len(p.boundaries) != m.num_stages - 1:
        raise UserError(f"{where}: field 'num_stages': the model gives "
                        f"{len(p.boundaries)} stage boundaries, the programs need "
                        f"{m.num_stages - 1}")
    if p.cfg.on_nan == SKIP:
        for program in p.programs:
            check_skip_supported(program, m.synchronous)
