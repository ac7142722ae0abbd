"""The runtime's wiring in plain sight: one builder from a small config, no
patching after construction, fault injection read once; stream pieces; the
packing of multi-tensor boundaries."""

from __future__ import annotations

import pytest
import torch
from runtime_testing import compile_preset, config
from schedc.runtime import faults
from schedc.runtime.boundary import Boundary
from schedc.runtime.interpreter import ExecutionError
from schedc.runtime.local import build_local
from schedc.runtime.programs import (
    Segment,
    body_piece,
    epilogue_piece,
    load,
    segment_stream,
    span,
)
from schedc.runtime.session import train
from schedc.runtime.setup import prepare
from schedc.runtime.stage import StageReplica
from schedc.runtime.wiring import interpreter_config, weights_steady

from schedc.compiler import compile_spec
from schedc.presets import preset_spec


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring")
    return {name: compile_preset(root / name, name, 2, 4) for name in ("1f1b", "paci")}


def test_injection_is_read_once_when_the_run_is_built(progs, monkeypatch):
    monkeypatch.setenv("SCHEDC_INJECT", "nan-loss@1")
    poisoned = build_local(config(progs["1f1b"], "--steps", "1"))
    monkeypatch.delenv("SCHEDC_INJECT")
    with pytest.raises(ExecutionError, match="non-finite loss"):
        train(poisoned)
    clean = build_local(config(progs["1f1b"], "--steps", "1"))
    monkeypatch.setenv("SCHEDC_INJECT", "nan-loss@1")  # too late: resolved at start-up
    assert len(train(clean)) == 1
    assert faults.Injection.from_env({"SCHEDC_INJECT": "nan-grad@1:5, nan-loss@2"}).places == {
        "nan-grad@1:5", "nan-loss@2"}


def test_one_config_object_per_interpreter(progs):
    p = prepare(config(progs["1f1b"], "--on-nan", "skip", "--trace", "t.json"))
    cfg = interpreter_config(p, 1)
    assert (cfg.rank, cfg.num_stages, cfg.dp_size, cfg.timing, cfg.on_nan) == (1, 2, 1, True,
                                                                                "skip")
    assert cfg.step_microbatches == 4 and cfg.body_len == len(p.programs[1].body)
    session = build_local(config(progs["1f1b"]))
    for interp in session.interps.values():  # nothing patched in after construction
        assert "drain" not in vars(interp.transport) and "on_loss" not in vars(interp)
        assert interp.dp_sparse is None


@pytest.mark.parametrize("name", ["1f1b", "paci"])
def test_pieces_make_the_segment_stream(progs, name):
    manifest, programs = load(progs[name])
    seg = Segment(2, 3, mb_base=8, version_base=3)
    for prog in programs:
        pieces = [i for k in range(3) for i in body_piece(prog, manifest, seg, k)]
        pieces += epilogue_piece(prog, manifest, seg, 3)
        assert pieces == segment_stream(prog, manifest, seg)


def test_several_tensors_travel_as_one_message_bit_for_bit():
    out = {"h": torch.randn(2, 3, requires_grad=True) * 1.0, "ids": torch.arange(5),
           "mask": torch.tensor([True, False, True]),
           "half": torch.randn(3, dtype=torch.float64).half().requires_grad_()}
    b = Boundary.of(out, stage=0)
    assert [leaf.grad for leaf in b.leaves] == [True, False, False, True]  # in dict order
    shape, dtype = b.act_spec()
    wire = b.pack_act(out)
    assert wire.dtype == torch.uint8 and tuple(wire.shape) == shape and dtype == torch.uint8
    back = b.unpack_act(wire)
    for key, t in out.items():
        assert back[key].dtype == t.dtype and torch.equal(back[key], t.detach())
    grads = [torch.randn(2, 3), torch.randn(3, dtype=torch.float16)]
    assert all(torch.equal(x, y) for x, y in zip(b.unpack_grad(b.pack_grad(grads)), grads,
                                                  strict=True))
    with pytest.raises(ValueError, match="needs no gradient"):
        Boundary.of((torch.zeros(2), torch.arange(3)), stage=1)


@pytest.mark.parametrize("name", ["1f1b", "paci"])
def test_span_without_unrolling_equals_the_unrolled_stream(progs, name):
    manifest, programs = load(progs[name])
    for count in (1, 2, 5):
        stream = [i for prog in programs for i in prog.unrolled(count, manifest.period)]
        mbs = max(i.mb + 1 for i in stream if i.mb is not None)
        steps = max(i.version for i in stream if i.op == "STEP")
        assert span(programs, manifest, count) == (mbs, steps)


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "zb-h1", "chimera", "zbv"])
def test_synchronous_programs_keep_every_stages_weights_steady(name):
    compiled = compile_spec(preset_spec(name, stages=4, microbatches=8).validate())
    for program in compiled.programs:
        held = {(i.pipeline or 0, i.stage) for i in program.body if i.op == "F"}
        assert weights_steady(program) == held


def test_a_step_between_a_forward_and_its_backward_is_seen():
    """PipeDream: a STEP runs while micro-batches are between F and B."""
    compiled = compile_spec(preset_spec("pipedream", stages=2, microbatches=4).validate())
    assert weights_steady(compiled.programs[0]) == set()


@pytest.mark.parametrize(("name", "hooked"), [("1f1b", False), ("paci", True)])
def test_weights_by_reference_only_where_they_can_change(progs, monkeypatch, name, hooked):
    """A synchronous run saves the forward's tensors as autograd does (no Python
    hook per saved tensor); PACI, whose backward may read a newer version, saves
    the weights by reference."""
    packed = []
    original = StageReplica._pack

    def pack(self, t):
        packed.append(1)
        return original(self, t)

    monkeypatch.setattr(StageReplica, "_pack", pack)
    train(build_local(config(progs[name], "--steps", "2")))
    assert bool(packed) == hooked
