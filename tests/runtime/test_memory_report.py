"""Peak memory in the cost profile: the compiler's predicted peaks per rank beside the
measured peak device bytes (None on CPU, where there is no device allocator)."""

from __future__ import annotations

import json

from runtime_testing import compile_preset, run_inprocess
from schedc.runtime.memory import peak_device_bytes

from schedc.simulate.costs import load_costs


def test_costs_out_carries_predicted_and_measured_memory(tmp_path):
    d = compile_preset(tmp_path / "p", "pipedream-2bw", 2, 4)
    costs = tmp_path / "costs.json"
    run_inprocess(d, "--steps", "2", "--costs-out", str(costs))
    memory = json.loads(costs.read_text())["source"]["memory"]
    ranks = json.loads((d / "manifest.json").read_text())["analysis"]["ranks"]
    assert [m["rank"] for m in memory] == [0, 1]
    for m, fig in zip(memory, ranks, strict=True):
        assert m["predicted_peak_activations"] == fig["peak_activations"]
        assert m["predicted_weight_copies"] == fig["weight_copies"]
        assert m["predicted_weight_bytes"] > 0
        assert m["measured_peak_bytes"] is None  # CPU
    load_costs(costs)  # and the simulator still reads the profile


def test_no_device_peak_on_cpu():
    import torch

    assert peak_device_bytes(torch.device("cpu")) is None
