"""A hand-written profile whose figures can be worked out on paper: every stage
F = 2 ms, B = 4 ms, I = W = 2 ms at 4 samples per micro-batch, no weight op
times, no link costs; 1 MB of stored activations per sample and 1 MB of
weights per stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HAND = {"format": "schedc-costs", "version": 1, "unit": "ms",
        "default": {"F": 2.0, "B": 4.0, "I": 2.0, "W": 2.0},
        "stored_activation_bytes": 4_000_000, "weight_bytes_per_stage": 1_000_000,
        "source": {"micro_batch_size": 4}}


@pytest.fixture
def hand_profile(tmp_path: Path) -> str:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(HAND))
    return str(path)
