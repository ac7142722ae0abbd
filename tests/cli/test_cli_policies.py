"""Issue 17's small consistencies: a hand-edited set made usable (check
--rehash), stale rank files, one file mode, preset suggestions, file names in
cost-file errors, bare runtime/kernels imports refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedc.cli import main
from schedc.files import file_mode

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> int:
    return main(list(argv))


def _compile(out: Path, stages: int = 2, preset: str = "1f1b") -> Path:
    assert run("compile", "--preset", preset, "--stages", str(stages), "--microbatches", "4",
               "-o", str(out), "-q") == 0
    return out


def test_reindented_program_is_usable_after_check_rehash(tmp_path: Path, capsys) -> None:
    out = _compile(tmp_path / "p")
    rank1 = out / "rank1.json"
    rank1.write_text(json.dumps(json.loads(rank1.read_text()), indent=4))
    capsys.readouterr()
    assert run("simulate", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{rank1}: " in err and f"schedc check --rehash {out}" in err
    assert run("check", str(out)) == 0
    said = capsys.readouterr().out
    assert "OK" in said and f"schedc check --rehash {out}" in said
    assert run("check", str(out), "--rehash") == 0
    assert "hashes recorded" in capsys.readouterr().out
    assert run("simulate", str(out)) == 0
    assert json.loads(rank1.read_text())  # kept as edited
    assert rank1.read_text().startswith("{\n    ")


def test_rehash_refuses_a_set_that_does_not_verify(tmp_path: Path, capsys) -> None:
    out = _compile(tmp_path / "p")
    before = (out / "manifest.json").read_text()
    rank1 = json.loads((out / "rank1.json").read_text())
    rank1["body"] = [i for i in rank1["body"] if i["op"] != "RECV_ACT"]
    (out / "rank1.json").write_text(json.dumps(rank1))
    assert run("check", str(out), "--rehash") == 2
    assert "verify error" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == before


def test_rehash_after_an_edit_of_the_spec(tmp_path: Path, capsys) -> None:
    out = _compile(tmp_path / "p")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["spec"]["name"] = "renamed"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run("show", str(out)) == 2
    assert "--rehash" in capsys.readouterr().err
    assert run("check", str(out), "--rehash") == 0
    assert run("show", str(out)) == 0


def test_compiling_fewer_ranks_removes_stale_rank_files(tmp_path: Path) -> None:
    out = _compile(tmp_path / "p", stages=8)
    (out / "rank12.txt").write_text("not ours")
    _compile(out, stages=4)
    assert sorted(p.name for p in out.glob("rank*")) == [
        "rank0.json", "rank1.json", "rank12.txt", "rank2.json", "rank3.json"]


def test_program_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert file_mode() == 0o640
        out = _compile(tmp_path / "p")
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o640}


def test_preset_option_suggests_the_nearest_name(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("compile", "--preset", "zbh1", "-o", "unused")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown preset 'zbh1'" in err and "did you mean 'zb-h1'?" in err


def test_preset_schedule_suggests_the_nearest_name(capsys) -> None:
    assert run("simulate", "preset:pipedream2bw") == 2
    assert "did you mean 'pipedream-2bw'?" in capsys.readouterr().err


def test_cost_file_errors_name_the_file(tmp_path: Path, capsys) -> None:
    out = _compile(tmp_path / "p", stages=4)
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"format": "schedc-costs", "version": 1, "unit": "ms",
                                 "stages": [{}, {}, {}]}))
    assert run("simulate", str(out), "--costs", str(costs)) == 2
    assert capsys.readouterr().err.strip() == (
        f"schedc: error: {costs}: stages has 3 entries but the program has 4 stages "
        "(give 4 or 1)")
    assert run("simulate", str(out), "--costs", str(tmp_path)) == 2
    assert capsys.readouterr().err.startswith(f"schedc: error: {tmp_path}: cannot read")


@pytest.mark.parametrize("name", ["runtime", "kernels"])
def test_bare_runtime_and_kernels_are_not_importable(name: str) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"import schedc.{name}, not {name}" in proc.stderr


@pytest.mark.parametrize("argv", [
    ["viz", "{p}", "--timeline", "{d}/nodir/x.svg"],
    ["graph", "{p}", "--dot", "{d}/nodir/x.dot"],
    ["compile", "--preset", "1f1b", "-o", "{d}/q", "-q", "--emit", "torch-csv",
     "{d}/nodir/x.csv"],
])
def test_a_file_that_cannot_be_written_is_named(tmp_path: Path, capsys, argv) -> None:
    out = _compile(tmp_path / "p")
    argv = [a.format(p=out, d=tmp_path) for a in argv]
    capsys.readouterr()
    assert run(*argv) == 2
    assert capsys.readouterr().err == (f"schedc: error: {argv[-1]}: No such file or "
                                       "directory\n")
