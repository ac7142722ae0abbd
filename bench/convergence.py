"""Convergence under staleness: synchronous vs asynchronous schedules, AdamW vs
Muon, error feedback, look-ahead, PipeMare warm-up; on our own runs.

    .venv/bin/python bench/convergence.py                  # tiny, p = 4 and 8: ~15-25 min, 2 cores
    .venv/bin/python bench/convergence.py --size small     # wider model, longer runs (hours)
    .venv/bin/python bench/convergence.py --only 2bw-muon --p 4   # some configurations
    .venv/bin/python bench/convergence.py --report-only    # table and figures from saved results

Every configuration trains the same model from the same seed on the same
micro-batches (the runtime's data are a function of seed and micro-batch
index) for the same number of tokens, in-process (`schedc run --local`'s
machinery, bit for bit the distributed run). Asynchronous schedules take
their fill and drain steps out of the same token budget. Per configuration:

- final validation loss: the master weights after the last step, on held-out
  windows (`schedc.runtime.evaluate`), the same windows for every run;
- steps to target: the first point where the training loss, averaged over
  the trailing `SMOOTH` reference steps (a reference step = 8 micro-batches),
  is at or below the target; the target is the smoothed loss synchronous
  1F1B + AdamW reaches after 2/3 of the run, per model and p;
- time to target: when that step's loss is known (end of the forward of its
  last micro-batch on the last stage) in `schedc.simulate`, under the cost
  profile the runtime measured (`--costs-out`): F/B/ACC times pooled over
  every run of that model and p (the same work; the median of the runs'
  medians), optimizer and weight ops (STEP, STASH, SWAP, LOOKAHEAD, ...) the
  run's own; no link latency (in-process CPU runs). ALLREDUCE (AMDP) is
  priced as one ACC (a sum of two gradient buffers, what the in-process
  reduction does): the in-process measurement of an ALLREDUCE includes the
  other ranks' work run while the first member waited (the cooperative
  driver), so it is not a cost. The simulator adds the waiting itself.

Results: one JSON per configuration in OUT (default
bench/results/convergence-<size>/), skipped when present (delete it to rerun);
with `--save-every K` a run checkpoints and an interrupted run resumes from
its last checkpoint (asynchronous runs then drain at every checkpoint, which
changes their numbers slightly: the default tiny size does not checkpoint).
The table goes to OUT/table.md and stdout, loss curves to
docs/img/results_<model>_p<p>.png (matplotlib, the `study` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOOTH = 10  # reference steps in the trailing loss average
TARGET_AT = 2 / 3  # the target: 1F1B + AdamW's smoothed loss at this fraction of the run
REF_M = 8  # micro-batches per reference step (per optimizer step, except PipeDream's 1)


# ---- sizes and models ----------------------------------------------------------------

@dataclass(frozen=True)
class Size:
    layers: int
    d_model: int
    heads: int
    seq_len: int
    micro_batch_size: int
    steps: int  # reference steps of REF_M micro-batches: the token budget
    lr: float
    val_batches: int
    bert_model: str
    save_every: int = 0


SIZES = {
    # ~0.1 M parameters, 1,024 tokens per step, 300 steps: ~15 minutes for everything.
    "tiny": Size(8, 32, 2, 32, 4, 300, 3e-3, 32, "bert-tiny"),
    # ~0.4 M parameters, 4,096 tokens per step, 1,500 steps (checkpoints every 250).
    "small": Size(8, 64, 4, 64, 8, 1500, 2e-3, 64, "bert-tiny", save_every=250),
}


def _gpt(size: Size):
    from schedc.runtime.models.transformer import TransformerConfig, TransformerStage

    cfg = TransformerConfig(size.layers, size.d_model, size.heads, 256, causal=True)
    return lambda stage, num_stages: TransformerStage(cfg, stage, num_stages)


def gpt_tiny8(stage: int, num_stages: int):
    """The study's GPT for `--size tiny`: 8 layers (one per stage at p = 8), d = 32."""
    return _gpt(SIZES["tiny"])(stage, num_stages)


def gpt_small8(stage: int, num_stages: int):
    """The study's GPT for `--size small`: 8 layers, d = 64."""
    return _gpt(SIZES["small"])(stage, num_stages)


# ---- configurations ---------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    name: str
    preset: str
    optimizer: str = "adamw"
    spec: dict = field(default_factory=dict)  # Spec fields over the preset's (DSL fields)
    microbatches: int = REF_M
    model: str = "gpt"  # gpt | bert
    lr: float | None = None  # None: the size's

    def key(self, p: int) -> str:
        return f"{self.model}-p{p}-{self.name}"


EF = 0.5  # error-feedback lambda
GPT_CONFIGS = [
    Config("gpipe", "gpipe"),
    Config("1f1b", "1f1b"),
    Config("1f1b-muon", "1f1b", "muon"),
    Config("pipedream", "pipedream", microbatches=1),
    Config("pipedream-pipemare", "pipedream", spec={"lr_warmup_by_delay": 100}, microbatches=1),
    Config("2bw-adamw", "pipedream-2bw"),
    Config("2bw-muon", "pipedream-2bw", "muon"),
    Config("2bw-adamw-ef", "pipedream-2bw", spec={"error_feedback": EF}),
    Config("2bw-muon-ef", "pipedream-2bw", "muon", spec={"error_feedback": EF}),
    Config("paci", "paci"),
    Config("amdp", "amdp"),
    Config("paci-lookahead", "paci", spec={"lookahead": "auto"}),
]
# At p = 4 only, table only: error feedback's lambda, and a 3x lower learning rate
# (is a gap a property of the delay or of a learning rate too high for it?).
EF_SWEEP = [
    Config(f"2bw-{opt}-ef{lam}", "pipedream-2bw", opt, spec={"error_feedback": lam})
    for opt in ("adamw", "muon") for lam in (0.1, 0.25)
] + [
    Config(f"{c.name}-lr1e-3", c.preset, c.optimizer, c.spec, c.microbatches, lr=1e-3)
    for c in GPT_CONFIGS if c.name in ("1f1b", "1f1b-muon", "2bw-adamw", "2bw-muon", "paci")
]
BERT_CONFIGS = [
    Config("1f1b", "1f1b", model="bert"),
    Config("1f1b-muon", "1f1b", "muon", model="bert"),
    Config("2bw-adamw", "pipedream-2bw", model="bert"),
    Config("2bw-muon", "pipedream-2bw", "muon", model="bert"),
    Config("paci", "paci", model="bert"),
]


def plan_runs(ps: list[int], only: list[str] | None, bert: bool) -> list[tuple[Config, int]]:
    runs = [(c, p) for p in ps for c in GPT_CONFIGS]
    if 4 in ps:
        runs += [(c, 4) for c in EF_SWEEP]
    if bert:
        runs += [(c, 4) for c in BERT_CONFIGS]
    if only:
        runs = [(c, p) for c, p in runs if c.name in only or c.key(p) in only]
    return runs


# ---- one run -------------------------------------------------------------------------------

def compile_config(c: Config, p: int, out: Path):
    """Compile to OUT/programs/<key>; returns the directory."""
    from schedc.compiler import compile_spec
    from schedc.files import write_programs
    from schedc.presets import preset_spec

    spec = preset_spec(c.preset, stages=p, microbatches=c.microbatches, **c.spec).validate()
    compiled = compile_spec(spec)
    d = out / "programs" / c.key(p)
    d.mkdir(parents=True, exist_ok=True)
    write_programs(d, compiled.manifest, compiled.programs)
    return d


def bodies_for(d: Path, total_mbs: int, save_every: int = 0) -> tuple[int, int]:
    """(bodies, micro-batches used): the most body repetitions whose segments
    (prologue + bodies + epilogue each, one per checkpoint interval) use at most
    total_mbs micro-batches; exactly total_mbs without checkpoints."""
    from schedc.runtime.programs import after, load, plan, span

    manifest, programs = load(d)
    m = manifest.period.microbatches

    def used(bodies: int) -> int:
        segs = plan(programs, manifest, bodies, save_every)
        return after(programs, manifest, segs[-1]).mb_base

    extra = span(programs, manifest, 1)[0] - m  # fill and drain micro-batches
    bodies = max(1, (total_mbs - extra) // m)
    while bodies > 1 and used(bodies) > total_mbs:
        bodies -= 1
    while used(bodies + 1) <= total_mbs:
        bodies += 1
    got = used(bodies)
    if got != total_mbs and not save_every:
        raise RuntimeError(f"cannot match the token budget: {bodies} bodies use {got} "
                           f"micro-batches, the budget is {total_mbs}")
    return bodies, got


def _truncate_metrics(path: Path, ckpt: Path, m: int) -> None:
    """Keep the metrics lines of the steps the checkpoint holds (a resumed run appends)."""
    from schedc.runtime.checkpoint import find

    _, meta = find(ckpt)
    keep = meta["mb_base"] // m
    if path.exists():
        lines = [x for x in path.read_text().splitlines() if json.loads(x)["step"] <= keep]
        path.write_text("".join(x + "\n" for x in lines))


def run_config(c: Config, p: int, size_name: str, out: Path, threads: int, seed: int = 0
               ) -> dict:
    from schedc.runtime.config import add_run_arguments, config_from_args
    from schedc.runtime.evaluate import validation_loss
    from schedc.runtime.local import build_local
    from schedc.runtime.session import train

    size = SIZES[size_name]
    key = c.key(p)
    result: dict = {"key": key, "name": c.name, "model": c.model, "p": p, "size": size_name,
                    "preset": c.preset, "optimizer": c.optimizer, "spec": c.spec,
                    "microbatches": c.microbatches, "lr": c.lr or SIZES[size_name].lr}
    try:
        d = compile_config(c, p, out)
    except Exception as exc:  # reported in the table, never dropped
        result["status"] = f"compile failed: {type(exc).__name__}: {_one_line(exc)}"
        return result
    try:
        bodies, used_mbs = bodies_for(d, size.steps * REF_M, size.save_every)
        model = (f"convergence:gpt_{size_name}8" if c.model == "gpt" else size.bert_model)
        argv = [str(d), "--model", model, "--steps", str(bodies), "--optimizer", c.optimizer,
                "--lr", str(c.lr or size.lr), "--micro-batch-size", str(size.micro_batch_size),
                "--seq-len", str(size.seq_len), "--threads", str(threads), "--seed", str(seed),
                "--metrics", str(out / f"{key}.metrics.jsonl"),
                "--costs-out", str(out / f"{key}.costs.json")]
        ckpt = out / "checkpoints" / key
        if size.save_every:
            argv += ["--save-every", str(size.save_every), "--save-dir", str(ckpt)]
            if (ckpt / "latest").exists():
                argv += ["--resume", str(ckpt)]
                _truncate_metrics(out / f"{key}.metrics.jsonl", ckpt, c.microbatches)
                print(f"    resuming {key} from {ckpt}", file=sys.stderr)
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        cfg = config_from_args(parser.parse_args(argv))
        t0 = time.perf_counter()
        session = build_local(cfg)
        train(session)
        wall = time.perf_counter() - t0
        val = validation_loss(session, size.val_batches)
    except Exception as exc:
        result["status"] = f"run failed: {type(exc).__name__}: {_one_line(exc)}"
        traceback.print_exc()
        return result
    lines = [json.loads(x) for x in (out / f"{key}.metrics.jsonl").read_text().splitlines()]
    result.update(status="ok", bodies=bodies, microbatches_used=used_mbs,
                  wall_s=round(wall, 2), val_loss=val,
                  losses=[x["loss"] for x in lines], tokens_per_step=lines[0]["tokens"],
                  max_delay=[s["max_delay"] for s in session.manifest.analysis["stages"][0]])
    return result


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "render", None)
    text = text() if callable(text) else str(exc)
    return " ".join(text.split())[:400]


# ---- analysis --------------------------------------------------------------------------------

def curve(r: dict) -> tuple[list[float], list[float]]:
    """(reference steps seen, trailing-mean training loss), one point per optimizer step."""
    m = r["microbatches"]
    window = SMOOTH * REF_M // m
    xs, ys = [], []
    for i in range(len(r["losses"])):
        lo = max(0, i + 1 - window)
        xs.append((i + 1) * m / REF_M)
        ys.append(statistics.fmean(r["losses"][lo : i + 1]))
    return xs, ys


def steps_to(r: dict, target: float) -> float | None:
    for x, y in zip(*curve(r), strict=True):
        if x >= SMOOTH and y <= target:
            return x
    return None


def pooled_costs(results: list[dict], out: Path) -> dict[str, dict]:
    """Per run: its profile with F/B/I/W/ACC pooled over runs of the same model and p."""
    shared_ops = ("F", "B", "I", "W", "ACC")
    profiles = {r["key"]: json.loads((out / f"{r['key']}.costs.json").read_text())
                for r in results if r.get("status") == "ok"
                and (out / f"{r['key']}.costs.json").exists()}
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if r["key"] in profiles:
            groups.setdefault((r["model"], r["p"]), []).append(profiles[r["key"]])
    pooled = {}
    for r in results:
        if r["key"] not in profiles:
            continue
        mine = json.loads(json.dumps(profiles[r["key"]]))
        for s, times in enumerate(mine["stages"]):
            for op in shared_ops:
                vals = [g["stages"][s][op] for g in groups[(r["model"], r["p"])]
                        if op in g["stages"][s]]
                if vals:
                    times[op] = statistics.median(vals)
            if "ALLREDUCE" in times:  # see the module docstring
                times["ALLREDUCE"] = times.get("ACC", 0.0)
        pooled[r["key"]] = mine
    return pooled


def simulated_times(r: dict, profile: dict, out: Path) -> list[float]:
    """Simulated time at which each reference step's loss is known."""
    from schedc.runtime.programs import load

    from schedc.simulate import simulate
    from schedc.simulate.costs import costs_from_dict

    manifest, programs = load(out / "programs" / r["key"])
    sim = simulate(manifest, programs, costs_from_dict(profile), steps=r["bodies"])
    last = manifest.num_stages - 1
    done: dict[int, float] = {}
    for stream, ends in zip(sim.timeline.streams, sim.timeline.ends, strict=True):
        for ins, end in zip(stream, ends, strict=True):
            if ins.op == "F" and ins.stage == last:
                done[ins.mb] = end
    n = max(done) + 1
    return [max(done[j] for j in range(k * REF_M, (k + 1) * REF_M)) for k in range(n // REF_M)]


def analyse(results: list[dict], out: Path) -> list[dict]:
    pooled = pooled_costs(results, out)
    rows = []
    for r in results:
        row = {"key": r["key"], "model": r["model"], "p": r["p"], "name": r["name"],
               "status": r.get("status", "missing")}
        if row["status"] == "ok":
            ref = next((x for x in results if x["model"] == r["model"] and x["p"] == r["p"]
                        and x["name"] == "1f1b" and x.get("status") == "ok"), None)
            target = None
            if ref is not None:
                xs, ys = curve(ref)
                target = ys[int(len(ys) * TARGET_AT) - 1]
            k = steps_to(r, target) if target is not None else None
            t = None
            if k is not None and r["key"] in pooled:
                times = simulated_times(r, pooled[r["key"]], out)
                t = times[int(round(k)) - 1]
            final = curve(r)[1][-1]
            row.update(val_loss=r["val_loss"], train_loss=final, target=target,
                       steps_to_target=k, time_to_target=t, wall_s=r["wall_s"],
                       max_delay=max(r["max_delay"]))
        rows.append(row)
    # gap to the synchronous run of the same optimizer
    for row in rows:
        if row["status"] != "ok":
            continue
        base = "1f1b-muon" if "muon" in row["name"] else "1f1b"
        if row["name"].endswith("-lr1e-3"):
            base += "-lr1e-3"
        ref = next((x for x in rows if x["model"] == row["model"] and x["p"] == row["p"]
                    and x["name"] == base and x["status"] == "ok"), None)
        row["gap"] = None if ref is None else row["val_loss"] - ref["val_loss"]
        row["sync_ref"] = base
    return rows


def table(rows: list[dict]) -> str:
    head = ("| model | p | configuration | max delay | val loss | gap to sync (same optimizer) "
            "| train loss (last 10) | steps to target | simulated time to target (s) "
            "| wall (s) |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | {row['p']} | {row['name']} | | "
                         f"**{row['status']}** | | | | | |")
            continue
        gap = "" if row.get("gap") is None else f"{row['gap']:+.3f}"
        if row["name"] in ("1f1b", "1f1b-muon", "1f1b-lr1e-3", "1f1b-muon-lr1e-3"):
            gap = "(reference)"
        k = "not reached" if row["steps_to_target"] is None else f"{row['steps_to_target']:.0f}"
        t = "" if row["time_to_target"] is None else f"{row['time_to_target']:.2f}"
        lines.append(
            f"| {row['model']} | {row['p']} | {row['name']} | {row['max_delay']} | "
            f"{row['val_loss']:.4f} | {gap} | {row['train_loss']:.4f} | {k} | {t} | "
            f"{row['wall_s']:.0f} |")
    targets = sorted({(r["model"], r["p"], r["target"]) for r in rows
                      if r["status"] == "ok" and r.get("target") is not None})
    notes = "; ".join(f"{m} p={p}: {t:.4f}" for m, p, t in targets)
    return ("\n".join(lines)
            + f"\n\nTargets (1F1B + AdamW's smoothed loss at 2/3 of the run): {notes}\n")


def plot(results: list[dict], img: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed (pip install -e '.[study]'): no figures", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if r.get("status") == "ok" and "-ef0." not in r["name"] and "-lr" not in r["name"]:
            groups.setdefault((r["model"], r["p"]), []).append(r)
    panels = [
        ("schedules (AdamW unless named)", lambda n: "muon" not in n or n == "1f1b-muon"),
        ("optimizers under 2BW's one-step delay", lambda n: n.startswith(("1f1b", "2bw"))),
    ]
    for (model, p), rs in sorted(groups.items()):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=100, sharey=True)
        lo = min(min(curve(r)[1]) for r in rs)
        palette = plt.cm.tab10.colors + plt.cm.Dark2.colors
        colors = {r["name"]: palette[i % len(palette)] for i, r in enumerate(rs)}
        for ax, (title, keep) in zip(axes, panels, strict=True):
            shown = [r for r in rs if keep(r["name"])]
            for r in shown:
                xs, ys = curve(r)
                style = "-" if r["name"] in ("gpipe", "1f1b", "1f1b-muon") else "--"
                if any(k in r["name"] for k in ("-ef", "lookahead", "pipemare")):
                    style = ":"
                ax.plot(xs, ys, style, color=colors[r["name"]], linewidth=1.3,
                        label=f"{r['name']} (val {r['val_loss']:.3f})")
            ax.set_title(f"{model}, p = {p}: {title}", fontsize=10)
            ax.set_xlabel(f"reference steps ({REF_M} micro-batches each; equal tokens)")
            ax.set_ylim(lo - 0.05, lo + 1.2)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel(f"training loss (trailing mean of {SMOOTH} steps)")
        path = img / f"results_{model}_p{p}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


# ---- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--p", type=int, nargs="+", default=[4, 8], help="pipeline stages")
    ap.add_argument("--only", nargs="+", default=None, help="configuration names or keys")
    ap.add_argument("--no-bert", action="store_true", help="skip the BERT runs")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--seed", type=int, default=0,
                    help="initialisation and data seed (another seed: a noise estimate)")
    ap.add_argument("--steps", type=int, default=None, help="override the size's token budget")
    ap.add_argument("--save-every", type=int, default=None,
                    help="checkpoint every K bodies (resume after an interruption)")
    args = ap.parse_args(argv)
    import dataclasses

    if args.steps is not None:
        SIZES[args.size] = dataclasses.replace(SIZES[args.size], steps=args.steps)
    if args.save_every is not None:
        SIZES[args.size] = dataclasses.replace(SIZES[args.size], save_every=args.save_every)
    suffix = f"-seed{args.seed}" if args.seed else ""
    out = args.out or ROOT / "bench" / "results" / f"convergence-{args.size}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # `convergence:gpt_*8`
    runs = plan_runs(args.p, args.only, not args.no_bert)
    results = []
    t0 = time.perf_counter()
    for i, (c, p) in enumerate(runs, 1):
        path = out / f"{c.key(p)}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            print(f"[{i}/{len(runs)}] {c.key(p)}: done before, skipped", file=sys.stderr)
            continue
        if args.report_only:
            results.append({"key": c.key(p), "name": c.name, "model": c.model, "p": p,
                            "status": "not run"})
            continue
        print(f"[{i}/{len(runs)}] {c.key(p)} ({time.perf_counter() - t0:.0f} s so far)",
              file=sys.stderr)
        r = run_config(c, p, args.size, out, args.threads, args.seed)
        if r["status"] == "ok":
            path.write_text(json.dumps(r) + "\n")
        else:
            print(f"    {r['status']}", file=sys.stderr)
        results.append(r)
    rows = analyse(results, out)
    text = table(rows)
    (out / "table.md").write_text(text)
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)
    for path in plot(results, args.img):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--dp-study"]:  # the data-parallel study lives beside this file
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from dp_study import dp_main

        sys.exit(dp_main(sys.argv[2:]))
    sys.exit(main())
