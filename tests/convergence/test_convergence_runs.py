"""Delay corrections in whole runs: the forward reads look-ahead weights, the
distributed run equals the in-process one with Muon + error feedback and with
look-ahead + PipeMare, and a tiny study configuration runs end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))
from runtime_testing import assert_same, run_inprocess, run_torchrun, write_programs  # noqa: E402
from schedc.runtime.local import build_local  # noqa: E402
from schedc.runtime.session import train  # noqa: E402
from schedc.runtime.stage import LOOKAHEAD  # noqa: E402

from schedc.compiler import compile_spec  # noqa: E402
from schedc.presets import preset_spec  # noqa: E402


def _compile(root: Path, name: str, preset: str, stages: int, mbs: int, **spec) -> Path:
    compiled = compile_spec(preset_spec(preset, stages=stages, microbatches=mbs, **spec).validate())
    return write_programs(root / name, compiled)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    return {
        "paci-la": _compile(root, "paci-la", "paci", 2, 4, lookahead="auto"),
        "paci-la3": _compile(root, "paci-la3", "paci", 2, 4, lookahead=0.75),
        "2bw-ef": _compile(root, "2bw-ef", "pipedream-2bw", 2, 4, error_feedback=0.5),
    }


def test_forward_reads_lookahead_weights(programs):
    """Every look-ahead forward reads w_v + alpha (w_v - w_{v-1}) of its stage,
    alpha from the programs' LOOKAHEAD (here 0.75)."""
    from runtime_testing import config

    torch.set_num_threads(1)
    session = build_local(config(programs["paci-la3"], "--steps", "3"))
    history: dict[tuple, dict[int, torch.Tensor]] = {}
    seen: list[tuple] = []
    for interp in session.interps.values():
        for key, rep in interp.replicas.items():
            history[key] = {0: rep.current.clone()}
            step = rep.step

            def wrapped(version, count, _rep=rep, _key=key, _step=step, **kw):
                _step(version, count, **kw)
                history[_key][version] = _rep.current.clone()

            rep.step = wrapped

            def pre_hook(module, args, _rep=rep, _key=key):
                if _rep.active == LOOKAHEAD:
                    reads = torch.cat([p.detach().reshape(-1) for p in _rep.params])
                    seen.append((_key, _rep.lookahead_version, reads))

            rep.module.register_forward_pre_hook(pre_hook)
    train(session)
    assert len(seen) >= 4
    for key, v, reads in seen:
        w, w_prev = history[key][v], history[key][v - 1]
        torch.testing.assert_close(reads, w + 0.75 * (w - w_prev), rtol=0, atol=1e-7)


def test_distributed_equals_inprocess_with_corrections(programs, tmp_path):
    """Bit for bit on 2 gloo ranks: 2BW + Muon + error feedback (the Spec's
    lambda, overridden on the command line), PACI + look-ahead auto + PipeMare."""
    jobs = {
        "2bw-muon-ef": [str(programs["2bw-ef"]), "--steps", "3", "--optimizer", "muon",
                        "--error-feedback", "0.3"],
        "paci-la-pm": [str(programs["paci-la"]), "--steps", "3", "--lr-warmup-by-delay", "4",
                       "--lookahead", "auto"],
    }
    dist = run_torchrun(jobs, 2, tmp_path / "dist")
    for name, argv in jobs.items():
        local = run_inprocess(Path(argv[0]), *argv[1:])
        assert_same(local, dist[name])
    # the corrections changed the numbers (they were applied, not ignored)
    plain = run_inprocess(programs["2bw-ef"], "--steps", "3", "--optimizer", "muon",
                          "--error-feedback", "0")
    assert plain.losses[-1] != dist["2bw-muon-ef"].losses[-1]


def test_lookahead_option_needs_lookahead_programs(tmp_path):
    from schedc.errors import UserError

    d = _compile(tmp_path, "paci", "paci", 2, 4)
    with pytest.raises(UserError, match="compiled without look-ahead"):
        run_inprocess(d, "--steps", "1", "--lookahead", "auto")


def test_tiny_study_runs_end_to_end(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import convergence

    out, img = tmp_path / "out", tmp_path / "img"
    img.mkdir()
    argv = ["--steps", "12", "--p", "4", "--no-bert", "--out", str(out), "--img", str(img),
            "--only", "1f1b", "2bw-muon-ef"]
    assert convergence.main(argv) == 0
    rows = {r["name"]: r for r in json.loads((out / "rows.json").read_text())}
    assert set(rows) == {"1f1b", "2bw-muon-ef"}
    for r in rows.values():
        assert r["status"] == "ok", r
        # Untrained: ln 256 = 5.545 (uniform over the bytes; measured 5.55). After 12
        # steps 1F1B reaches 4.20 and 2BW + Muon + EF 4.30: a drop of at least 1.0.
        assert 0 < r["val_loss"] < math.log(256) - 1.0, r
    assert rows["1f1b"]["steps_to_target"] is not None
    assert rows["1f1b"]["time_to_target"] > 0
    # a second invocation skips what is done
    assert convergence.main(argv) == 0
    assert "| gpt | 4 | 2bw-muon-ef |" in (out / "table.md").read_text()
