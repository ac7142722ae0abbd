"""`schedc tune` end to end: what it prints and writes, and bad input as one
line with exit status 2."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from schedc.cli import main
from schedc.files import load_programs
from schedc.simulate import figures, load_costs, simulate

SVG = "{http://www.w3.org/2000/svg}"


def tune(*argv: str) -> int:
    return main(["tune", *argv])


def test_writes_programs_costs_table_and_plot(hand_profile: str, tmp_path: Path,
                                              capsys) -> None:
    out, plot = tmp_path / "out", tmp_path / "tune.svg"
    assert tune("--costs", hand_profile, "--ranks", "2", "--global-batch", "8",
                "--families", "gpipe,1f1b", "zb-h1", "paci", "--max-delay", "1",
                "--top", "3", "--plot", str(plot), "-o", str(out)) == 0
    text = capsys.readouterr().out
    # at m = 1, 1F1B is GPipe, and ZB-H1 is GPipe with the backward split
    assert "36 candidates: 33 within the caps, 3 with the same programs as another" in text
    # PACI's steady state has no bubble: 8 samples x 1.5 ms
    assert re.search(r"^ *1  paci m8 +1 +12 ms +666.7 +0.000 +2.86 MiB +1 +1$", text, re.M)
    assert "... 30 more in tune.json" in text
    assert text.rstrip().endswith(f"best: paci m8: programs, costs.json and tune.json in "
                                  f"{out}/")
    table = json.loads((out / "tune.json").read_text())
    assert table["format"] == "schedc-tune" and table["best"] == "paci m8"
    assert len(table["candidates"]) == 36 and table["candidates"][0]["rank"] == 1
    assert table["query"] == {"ranks": 2, "global_batch": 8, "dp": 1, "memory_bytes": None,
                              "max_delay": 1, "max_inconsistency": None}
    first_sync = next(c for c in table["candidates"] if c["family"] != "paci")
    assert (first_sync["label"], first_sync["step_time"], first_sync["rank"]) == \
        ("zb-h1 m8", 12.5, 17)
    # the programs written are the best candidate's, verified, and its costs
    # reproduce the prediction
    manifest, programs = load_programs(out)
    assert manifest.spec["name"] == "paci-m8" and manifest.spec["microbatches"] == 8
    fig = figures(simulate(manifest, programs, load_costs(out / "costs.json"), steps=4))
    assert 8 / fig.steady_state_throughput == pytest.approx(12.0, rel=1e-12)
    # the plot: one point per ranked candidate; the front (zb-h1 m8 at delay 0,
    # paci m8 at delay 1) drawn and labelled
    root = ET.fromstring(plot.read_text())
    circles = [c for c in root.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]
    assert len(circles) == 33
    assert root.find(f"{SVG}polyline") is not None
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "zb-h1 m8" in labels and "paci m8" in labels and "paci m4" not in labels
    assert "staleness: max delay (optimizer steps)" in labels


def test_nothing_within_the_caps_still_writes_the_table(hand_profile: str, tmp_path: Path,
                                                       capsys) -> None:
    assert tune("--costs", hand_profile, "--ranks", "2", "--global-batch", "2", "--families",
                "1f1b", "--memory", "1KiB", "-o", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"schedc: error: no candidate within the caps (4 candidates: 0 within the "
                   f"caps, 4 over memory); {tmp_path / 'o'}/tune.json lists them all"]
    assert json.loads((tmp_path / "o" / "tune.json").read_text())["best"] is None


@pytest.mark.parametrize("argv, message", [
    ([], "no cost profile: give --costs FILE (measured) or --model NAME"),
    (["--costs", "missing.json"], "missing.json: no such file"),
    (["--costs", "{hand}", "--families", "pacy"], "--families: unknown family 'pacy'"),
    (["--costs", "{hand}", "--memory", "40XB"], "--memory: not a size: '40XB'"),
    (["--costs", "{hand}", "--chunks", "1"], "--chunks: expected integers >= 2"),
    (["--costs", "{hand}", "--dp", "3"], "--global-batch 8 must be a multiple of --dp 3"),
    (["--costs", "{hand}", "--top", "0"], "--top must be at least 1, got 0"),
    (["--costs", "{hand}", "--max-delay", "-1"], "--max-delay must be at least 0, got -1"),
    (["--model", "gpt-2b"], "unknown model 'gpt-2b'"),
    (["--model", "gpt-1b", "--hardware", "h300"], "unknown hardware 'h300'"),
    (["--hardware", "h100"], "--hardware needs --model"),
    (["--model", "gpt-125m", "--ranks", "16"], "--ranks 16: the model has 12 layers"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, hand_profile: str,
                                          tmp_path: Path, capsys) -> None:
    argv = [a.replace("{hand}", hand_profile) for a in argv]
    if "--ranks" not in argv:
        argv += ["--ranks", "2"]
    code = tune(*argv, "--global-batch", "8", "-o", str(tmp_path / "o"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err


def test_a_measured_profile_takes_precedence(hand_profile: str, tmp_path: Path,
                                            capsys) -> None:
    assert tune("--costs", hand_profile, "--model", "gpt-1b", "--ranks", "2",
                "--global-batch", "2", "--families", "1f1b", "-o", str(tmp_path / "o")) == 0
    text = capsys.readouterr().out
    assert "the measured profile takes precedence" in text
    assert json.loads((tmp_path / "o" / "tune.json").read_text())["profile"]["kind"] == \
        "measured"


def test_an_estimate_without_a_run(tmp_path: Path, capsys) -> None:
    assert tune("--model", "gpt-125m", "--hardware", "a100", "--ranks", "2", "--global-batch",
                "2", "--families", "1f1b", "-o", str(tmp_path / "o")) == 0
    text = capsys.readouterr().out
    # the memory cap defaults to the accelerator's 80 GB
    assert text.startswith("tune: 2 ranks x 1 replica(s), global batch 2, memory cap 74.51 GiB; "
                           "estimate profile gpt-125m on a100 (micro-batch 1, unit s)\n"
                           "  note: estimate: gpt-125m (12 layers, d_model 768, seq 2048, "
                           "vocab 50257) on a100 (312 TFLOP/s x 0.5), not a measurement")
    table = json.loads((tmp_path / "o" / "tune.json").read_text())
    assert table["profile"]["kind"] == "estimate" and table["query"]["memory_bytes"] == 80e9
    # ranked by the simulated step time (the split variants first)
    assert [c["label"] for c in table["candidates"] if c["rank"]] == [
        "1f1b m2 split", "1f1b m1 split", "1f1b m2", "1f1b m1"]
