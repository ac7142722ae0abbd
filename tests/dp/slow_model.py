"""gpt-tiny stages that sleep in every forward on the processes listed in
DP_SLOW_RANKS (global ranks, comma-separated) for DP_SLOW_S seconds: an
artificially slowed data-parallel replica (`--model slow_model:build_stage`)."""

import os
import time

from schedc.runtime.models import SIZES, TransformerStage


class _Slow(TransformerStage):
    def forward(self, x):
        ranks = {int(r) for r in os.environ.get("DP_SLOW_RANKS", "").split(",") if r}
        if int(os.environ.get("RANK", "0")) in ranks:
            time.sleep(float(os.environ.get("DP_SLOW_S", "0")))
        return super().forward(x)


def build_stage(stage: int, num_stages: int) -> TransformerStage:
    return _Slow(SIZES["gpt-tiny"], stage, num_stages)
