"""gpt-tiny stages whose process SIGKILLs itself at a chosen forward pass: a
rank dying mid-step, for the restart tests (`--model killer_model:build_stage`;
the same weights, data and numbers as `--model gpt-tiny`).

    SCHEDC_KILL="A:G:N,..."   on torchrun attempt A (TORCHELASTIC_RESTART_COUNT),
                              global rank G kills itself just before its N-th
                              forward pass of that attempt (N from 1)
    SCHEDC_KILL_LOG=FILE      each kill first appends "A G N time.time()" to FILE
"""

import os
import signal
import time

from schedc.runtime.models import SIZES, TransformerStage

_forwards = [0]  # real (not meta-device) forward passes of this process


def _kill_now() -> bool:
    spec = os.environ.get("SCHEDC_KILL", "")
    here = (os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"), os.environ.get("RANK", "0"),
            str(_forwards[0]))
    return any(tuple(part.split(":")) == here for part in spec.split(",") if part)


class _Killer(TransformerStage):
    def forward(self, x):
        if x.device.type != "meta":
            _forwards[0] += 1
            if _kill_now():
                log = os.environ.get("SCHEDC_KILL_LOG")
                if log:
                    with open(log, "a") as f:
                        f.write(f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')} "
                                f"{os.environ.get('RANK', '0')} {_forwards[0]} {time.time()}\n")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def build_stage(stage: int, num_stages: int) -> TransformerStage:
    return _Killer(SIZES["gpt-tiny"], stage, num_stages)
