"""The command line: compile/check/show/graph, exit statuses, and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schedc.cli import main

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.sched"))


def run(*argv: str) -> int:
    return main(list(argv))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_compiles_and_checks(path: Path, tmp_path: Path, capsys) -> None:
    assert run("compile", str(path), "-o", str(tmp_path / "p"), "-q") == 0
    assert run("check", str(tmp_path / "p")) == 0
    assert run("show", str(tmp_path / "p"), "--comms") == 0
    assert "body r0" in capsys.readouterr().out


def test_compile_preset_writes_manifest_and_ranks(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert run("compile", "--preset", "interleaved-1f1b", "--stages", "8", "--ranks", "4",
               "--microbatches", "8", "-o", str(out), "-q") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 4 and manifest["format_version"] == 1
    assert manifest["analysis"]["bubble_ratio"] == pytest.approx(3 / 19, rel=1e-12)
    assert sorted(manifest["files"]) == [f"rank{r}.json" for r in range(4)]


def test_show_prints_canonical_1f1b_grid(tmp_path: Path, capsys) -> None:
    run("compile", "--preset", "1f1b", "--stages", "2", "--microbatches", "3", "-o",
        str(tmp_path / "p"), "-q")
    run("show", str(tmp_path / "p"))
    out = capsys.readouterr().out
    assert "body r0 | F0   F1   B0   F2   B1   B2   S0>1" in out
    assert "body r1 | F0   B0   F1   B1   F2   B2   S1>1" in out


def test_show_prints_versions_for_asynchronous(tmp_path: Path, capsys) -> None:
    run("compile", "--preset", "paci", "--stages", "2", "--microbatches", "1", "-o",
        str(tmp_path / "p"), "-q")
    run("show", str(tmp_path / "p"))
    out = capsys.readouterr().out
    # PACI at p = 2, m = 1: rank 0 runs F1 on version 0 before B0's step, so
    # micro-batch 1's backward reads version 1 (inconsistency 1, delay 1).
    assert "max inconsistency 1, max delay 1" in out
    assert "prol r0 | F0@0\n" in out
    assert "prol r1 | F0@0 B0@0 S1>1\n" in out
    assert "body r0 | F1@0 B0@0 S0>1\n" in out
    assert "body r1 | F1@1 B1@1 S1>2\n" in out
    assert "epil r0 | B1@1 S0>2\n" in out


def test_hand_edit_is_caught_by_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p"
    run("compile", "--preset", "1f1b", "--stages", "2", "--microbatches", "2", "-o", str(out),
        "-q")
    rank1 = json.loads((out / "rank1.json").read_text())
    rank1["body"] = [i for i in rank1["body"] if i["op"] != "RECV_ACT"][:]
    (out / "rank1.json").write_text(json.dumps(rank1))
    assert run("check", str(out)) == 2
    err = capsys.readouterr().err
    assert "rank 1" in err and "RECV_ACT" not in err.split("rank 1")[0]
    assert run("show", str(out)) == 2  # the hash no longer matches
    assert "hash mismatch" in capsys.readouterr().err


def test_bad_dsl_gives_located_error_and_status_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.sched"
    bad.write_text("schedule x {\n  stages 4\n  order zigzag\n}\n")
    assert run("compile", str(bad), "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:9:" in err and "^" in err
    assert "Traceback" not in err


def test_unsatisfiable_bound_is_a_compile_error(tmp_path: Path, capsys) -> None:
    sched = tmp_path / "tight.sched"
    sched.write_text("schedule t from paci {\n  stages 4\n  microbatches 1\n"
                     "  max_inconsistency 1\n}\n")
    assert run("compile", str(sched), "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "verify error: rank" in err and "max_inconsistency 1 exceeded" in err
    assert not (tmp_path / "o").exists()


def test_emit_torch_csv_refuses_asynchronous(tmp_path: Path, capsys) -> None:
    code = run("compile", "--preset", "paci", "--stages", "2", "-o", str(tmp_path / "o"),
               "--emit", "torch-csv", str(tmp_path / "x.csv"))
    assert code == 2 and "no weight versions" in capsys.readouterr().err


def test_graph_writes_dot(tmp_path: Path) -> None:
    run("compile", "--preset", "gpipe", "--stages", "2", "--microbatches", "2", "-o",
        str(tmp_path / "p"), "-q")
    assert run("graph", str(tmp_path / "p"), "--dot", str(tmp_path / "g.dot")) == 0
    text = (tmp_path / "g.dot").read_text()
    assert text.startswith("digraph") and text.count("->") >= 8


def test_python_dash_m_and_missing_directory(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "schedc", "show", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not a program directory" in proc.stderr and "Traceback" not in proc.stderr


def test_compile_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from schedc.cli import main; "
            f"main(['compile', '--preset', '1f1b', '-o', {str(tmp_path / 'p')!r}, '-q']); "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_command_imports_its_own_module_only(tmp_path):
    """`schedc compile` parses with its own sub-command module and builds no
    networkx graph: neither the others' modules (tune, viz, simulate) nor
    networkx are imported (a fifth of a small compile's time)."""
    code = ("import sys; from schedc.cli import main; "
            f"rc = main(['compile', '--preset', 'paci', '--stages', '4', '-o', {str(tmp_path)!r},"
            " '-q']); "
            "print(rc, sorted(m for m in ('networkx', 'schedc.tune', 'schedc.viz', "
            "'schedc.simulate', 'schedc.cli.cmd_tune') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["0", "[]"]
