"""Regenerate docs/schedules.md: each family's grid (`schedc show`) and bounds.

    python scripts/gen_schedules_doc.py > docs/schedules.md
"""

from schedc.compiler import compile_spec
from schedc.modulo_table import TABLE
from schedc.presets import preset_spec
from schedc.report import grid, summary

FAMILIES = [
    ("gpipe", dict(stages=4, microbatches=4),
     "All forwards, then all backwards; flush before the step. Bubble (p-1)/(m+p-1), "
     "peak activations m on every rank."),
    ("1f1b", dict(stages=4, microbatches=6),
     "Rank r warms up with min(p-1-r, m) forwards, then alternates one forward and one "
     "backward, then drains. Bubble (p-1)/(m+p-1); peak activations min(p-r, m)."),
    ("interleaved-1f1b", dict(stages=8, ranks=4, microbatches=4),
     "v chunks per rank (stage c*p+r on rank r), Megatron's depth-first order; m a multiple "
     "of p. Bubble (p-1)/(v*m+p-1)."),
    ("zb-h1", dict(stages=4, microbatches=6),
     "1F1B with the backward split into I (input gradient) and W (weight gradient); W is "
     "deferred into the bubbles. Bubble (p-1)/(3m+p-1) for m >= p, 1F1B's memory."),
    ("zbv", dict(stages=4, microbatches=4),
     "ZB-V (PyTorch's `ScheduleZBVZeroBubble`): V-shaped placement (`directions v`): each of"
     ' the R = stages/2 ranks holds two chunks, stage i going down the ranks and stage '
     '2R-1-i coming back up, so rank 0 holds the first and the last stage; the zero-bubble '
     'order with I/W split. At the same p and m its unit-cost bubble is no larger than '
     "PyTorch's ZB-V order (simulated under the same rules) and its peak activations are "
     "equal (tests/cli/test_torch_csv.py, which also loads the exported CSV in PyTorch's "
     "runtime schedule). Within a rank's row the two chunks' ops interleave (stage 0 and "
     'stage 3 on rank 0 below).',
     'Adding V-shaped placement touched: `schedc/directions.py` (the `v` map), '
     '`schedc/spec.py` (`v_shaped`, the order/flush check), `schedc/presets.py` (`zbv`), '
     '`schedc/dsl/fields.py` (the `v` keyword), docs (dsl.md, this page, programs.md) and '
     'tests; the order, lowering, verifier, simulator and runtime needed no change.'),
    ("chimera", dict(stages=4, microbatches=4),
     'Two synchronous pipelines, `down` (stage i on rank i) and `up` (rank p-1-i); '
     "micro-batch j on pipeline j mod 2; each stage's two replicas all-reduce their "
     'gradients before the step (pipeline letters a, b in the grid). Ordered by a policy '
     'search up to 512 (stage, micro-batch) pairs (18 list-scheduling policies, the best '
     "three by the greedy's makespan lowered and timed), above that by a rule on m / p "
     '(`compiler.large_policy`: steps when idle; the oldest micro-batch first for m <= p, '
     "otherwise forwards first up to 2x (2p <= m < 4p) or 1.5x 1F1B's in-flight count), "
     "never more than 1% longer than the search's pick at 14 sizes compared from 32 x 17 "
     "to 32 x 256, and up to 16% shorter (bubble 0.28 at 32 x 256, where the search's pick "
     "had 0.39): below 1F1B's bubble up to m = 2p (e.g. 0.143 vs 0.273 at p = 4, m = 8; "
     "0.2 vs 0.304 at p = 8, m = 16), above it for m >= 4p, where Chimera's forward "
     'doubling (not implemented) would be needed.'),
    ("pipedream", dict(stages=4, microbatches=1),
     "Asynchronous 1F1B with a step after every a micro-batches (here 1) and weight "
     "stashing: the backward reads its forward's version (inconsistency 0); stage s keeps "
     "p-s versions; the delay is p-s-1 at stage s."),
    ("pipedream-2bw", dict(stages=4, microbatches=4),
     "Two weight buffers; one update per m >= p micro-batches; forwards of batch b read "
     "version b-1 and backwards the same version: delay exactly 1 in the steady state, "
     "two weight copies per stage."),
    ("paci", dict(stages=4, microbatches=2),
     "No stash, one weight copy, no flush: pending backwards first, otherwise a forward "
     "while fewer than p-s are in flight; each stage steps after every a-th local backward. "
     "The backward reads the current weights: inconsistency at stage s is at most "
     "ceil((p-s-1)/a), and reaches it; the steady state has no bubble."),
    ("amdp", dict(stages=4, microbatches=4),
     "N concurrent pipelines over the same ranks (directions auto: N = max(2, ceil(p/2)); "
     "for p = 4, 8 the reference's mirror pairs, otherwise pipeline k is the rotation "
     "s -> s - 2k mod p; every stage's replicas on distinct ranks); stage 0 of a pipeline "
     "starts the forward of micro-batch u + 2 before the backward of u (Megatron's warm-up "
     "of two; `max_inflight 3 at stage 0` in schedc's count, which includes the forward "
     "being started); the replicas of a stage all-reduce and take one step per global batch "
     "of m gradients, with no flush: inconsistency and delay at most 1. The order is "
     "constructed, not searched: a modulo schedule (`schedc/modulo.py`) in which one "
     "micro-batch of every pipeline enters per initiation interval II and every chain "
     "follows one template (`schedc/modulo_search.py`). II = 3N leaves no steady-state "
     "bubble; the template is a closed form there: with the rotations a rank holds the "
     "stages of one parity, forwards F(2q + e) at 3q + e and backwards 6 units apart per "
     "pair of stages, which tiles the period (odd p: the template of p + 1 ranks with one "
     "rank taken out); where the rotations do not apply (p = 2, 3, 4, 8) a small search on "
     "one period finds it, with the reference's peak activations as a constraint. Where N "
     "does not divide m, the steps fall between pipelines: pipeline k enters 3k units "
     "after pipeline 0 (a closed form for odd N and even p). Elsewhere no template of one "
     "iteration lets the steps fall between pipelines (with every pipeline's backward of a "
     "stage at one instant a batch would need as many micro-batches of each pipeline). "
     "For the shapes of `schedc/modulo_table.py` one template "
     "spans the whole period instead, lcm(N, m) micro-batches (N / gcd(N, m) steps), one "
     "row per micro-batch, so the steps need windows only where batches end: found offline "
     "by a solver (`scripts/amdp_templates.py`, which states the model: no rank running two "
     "operations at once, three forwards alive per pipeline at stage 0, each step after "
     "its batch's last backward of the stage and before the next batch's first and before "
     "any forward of the batch after, peak activations no higher than without the table) "
     "and checked at every compile like any other template. Otherwise each batch takes "
     "whole iterations, the pipelines without one more micro-batch of the batch idle in "
     "its last (a bubble of 1 - m / (N ceil(m/N))). A step of few micro-batches (m < 3N "
     "or so) takes more whole iterations per batch, so that two steps never fall inside "
     "one micro-batch's flight. The table below gives the figures for p = 4..16 at m = 2N "
     "and m = p, and for the whole-period shapes (tests/compiler/test_amdp.py asserts "
     "them)."),
]


AMDP_DEPTHS = range(4, 17)


def amdp_cases() -> list[tuple[int, int]]:
    """(p, m) of the AMDP table: m = 2N and m = p for p = 4..16, and the shapes
    of schedc/modulo_table.py."""
    cases = set(TABLE)
    for p in AMDP_DEPTHS:
        n = preset_spec("amdp", stages=p).num_pipelines
        cases |= {(p, 2 * n), (p, p)}
    return sorted(cases)


def amdp_row(p: int, m: int) -> str:
    """One row of the AMDP table, from the compiled manifest's analysis."""
    c = compile_spec(preset_spec("amdp", stages=p, microbatches=m))
    a = c.manifest.analysis
    peaks = " ".join(str(r["peak_activations"]) for r in a["ranks"])
    return (f"| {p} | {c.spec.num_pipelines} | {m} | {a['steady_state_bubble_ratio']:.4f} | "
            f"{(p - 1) / (m + p - 1):.4f} | {peaks} | {a['max_inconsistency']} | "
            f"{a['max_delay']} |")


def amdp_table() -> None:
    print("| p | N | m | steady-state bubble | 1F1B-flush bubble | peak activations per rank "
          "| max inconsistency | max delay |")
    print("|---|---|---|---|---|---|---|---|")
    for p, m in amdp_cases():
        print(amdp_row(p, m))
    print()


def main() -> None:
    print("# The schedule families\n")
    print("Generated by `python scripts/gen_schedules_doc.py > docs/schedules.md` from the "
          "compiler itself: every grid below is `schedc show` of the preset with the "
          "parameters given, every figure the manifest's analysis (unit costs F=1, B=2, "
          "I=W=1). In asynchronous grids `F3@1` means micro-batch 3 reads weight version 1, "
          "and `S0>2` is stage 0's step to version 2. The body repeats; each repetition "
          "shifts micro-batches by m and versions by 1.\n")
    print("Asynchronous programs are checked unrolled (1, 2 and 3 body repetitions); the "
          "verifier proves every bound the schedule declares, and tightening one below what "
          "the schedule achieves is a compile error naming the worst micro-batch and stage.\n")
    for name, kw, text, *after in FAMILIES:
        c = compile_spec(preset_spec(name, **kw))
        args = " ".join(f"--{k} {v}" for k, v in kw.items())
        print(f"## {name}\n\n{text}\n")
        print("```console")
        print(f"$ schedc compile --preset {name} {args} -o out -q")
        print("$ schedc show out")
        print(summary(c.manifest))
        print()
        print(grid(c.manifest, c.programs))
        print("```\n")
        for note in after:
            print(f"{note}\n")
        if name == "amdp":
            amdp_table()


if __name__ == "__main__":
    main()
