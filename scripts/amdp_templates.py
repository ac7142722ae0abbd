"""Find AMDP's whole-period templates where N does not divide m, with a CP-SAT
solver, and print them as schedc/modulo_table.py's entries:

    pip install ortools   # not a dependency of schedc: only this script needs it
    .venv/bin/python scripts/amdp_templates.py 5x8 4x5 --seconds 60 >> found.txt

and paste the printed entries into schedc/modulo_table.py's TABLE (each shape
tries extra = 0, 1, .. with --seconds each, and stops at the first template
found or at today's bubble; "UNKNOWN" on stderr: no answer in that time).

Why a solver: where N does not divide m, a template of one iteration (one
micro-batch per pipeline) needs every pipeline's backward of a stage in a
separate window for the steps to fall between pipelines, which the closed
forms give only for odd N and even p. Over the whole period of lcm(N, m)
micro-batches (N/g steps, g = gcd(N, m)) only the real batch boundaries need a
step window, and the idle slots of whole-iteration batches mostly disappear.
The model, for P = 3 lcm(N, m) + extra units per period (extra = 0: no
bubble), the least extra first:
- micro-batch u of the period (pipeline u mod N) runs its chain F(0..p-1),
  B(p-1..0) at S[u][x] + P i in the i-th period; chains in order;
- no rank runs two operations at once (mod P);
- stage 0 of a pipeline: the forward of u starts after the backward of u - 3N
  (three forwards alive at most);
- the step of batch j on stage s at tau[j][s]: after the stage's last
  backward of batch j (+2), before its first of batch j + 1 and before every
  forward of batch j + 2 on that stage (delay <= 1, hence inconsistency <= 1),
  at an instant no replica rank is inside a backward;
- peak activations per rank no higher than today's (the compiled manifest's).
Every entry is checked again by schedc.modulo at compile time and the compiled
programs by the verifier.
"""

from __future__ import annotations

import argparse
import math
import pprint
import sys

from ortools.sat.python import cp_model

from schedc import modulo_table
from schedc.compiler import compile_spec
from schedc.presets import preset_spec

modulo_table.TABLE.clear()  # today's figures: without the entries found so far


def today(p: int, m: int) -> tuple[float, list[int]]:
    """The steady-state bubble and peak activations per rank without the table."""
    a = compile_spec(preset_spec("amdp", stages=p, microbatches=m)).manifest.analysis
    return a["steady_state_bubble_ratio"], [r["peak_activations"] for r in a["ranks"]]


def solve(p: int, m: int, extra: int, caps: list[int], seconds: float, workers: int):
    maps = preset_spec("amdp", stages=p, microbatches=m).resolved_directions()
    n = len(maps)
    rows = math.lcm(n, m)
    period = 3 * rows + extra
    nb = rows // m
    ops = [("F", s, 1) for s in range(p)] + [("B", s, 2) for s in reversed(range(p))]
    bx = {s: 2 * p - 1 - s for s in range(p)}
    top = 4 * period + 30 * n
    model = cp_model.CpModel()
    S = [[model.NewIntVar(0, top, "") for _ in ops] for _ in range(rows)]
    tau = [[model.NewIntVar(0, top + period, "") for _ in range(p)] for _ in range(nb)]

    def at(u: int, x: int):
        q, r = divmod(u, rows)
        return S[r][x] + period * q

    model.Add(S[0][0] == 0)
    for u in range(rows):  # entries near their share of the period; short chains
        if u + 1 < rows:
            model.Add(S[u + 1][0] >= S[u][0])
        model.Add(S[u][0] >= u * period // rows - 3 * n)
        model.Add(S[u][0] <= u * period // rows + 3 * n)
        model.Add(S[u][-1] <= S[u][0] + 9 * n)
    busy: list[list] = [[] for _ in range(p)]
    middle: list[list] = [[] for _ in range(p)]
    held: list[list] = [[] for _ in range(p)]
    for u in range(rows):
        k = u % n
        for x, (kind, s, d) in enumerate(ops):
            pos = model.NewIntVar(0, period - 1, "")
            model.AddModuloEquality(pos, S[u][x], period)
            if x + 1 < len(ops):
                model.Add(S[u][x + 1] >= S[u][x] + d)
            r = maps[k][s]
            for shift in (0, period):
                busy[r].append(model.NewFixedSizeIntervalVar(pos + shift, d, ""))
                if kind == "B":
                    middle[r].append(model.NewFixedSizeIntervalVar(pos + shift + 1, 1, ""))
        model.Add(at(u - 3 * n, bx[0]) + 2 <= at(u, 0))
        for s in range(p):
            held[maps[k][s]].append((S[u][s], S[u][bx[s]]))
    for r in range(p):
        model.AddNoOverlap(busy[r])
        # forwards alive (from F to B) over four periods' copies: the periods in
        # the middle hold every copy alive then, so the count is the steady state's
        alive = []
        for f, b in held[r]:
            span = model.NewIntVar(1, top, "")
            model.Add(span == b - f)
            for i in range(4):
                alive.append(model.NewIntervalVar(f + i * period, span, b + i * period, ""))
        model.AddCumulative(alive, [1] * len(alive), caps[r])
    window = 3 * n + 2
    for j in range(nb):
        end = (j + 1) * m
        for s in range(p):
            t = tau[j][s]
            for u in range(end - window, end):
                model.Add(at(u, bx[s]) + 2 <= t)
            for u in range(end, end + window):
                model.Add(t <= at(u, bx[s]))
            for u in range(end + m, end + m + window):
                model.Add(t <= at(u, s))
            pos = model.NewIntVar(0, period - 1, "")
            model.AddModuloEquality(pos, t, period)
            mine = [model.NewFixedSizeIntervalVar(pos + shift, 1, "") for shift in (0, period)]
            for r in {mp[s] for mp in maps}:
                model.AddNoOverlap(middle[r] + mine)
        if j + 1 < nb:
            for s in range(p):
                model.Add(tau[j][s] < tau[j + 1][s])
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = workers
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, solver.StatusName(status)
    return (period, tuple(tuple(solver.Value(v) for v in row) for row in S),
            tuple(tuple(solver.Value(v) for v in row) for row in tau)), "found"


def entry_text(p: int, m: int, found) -> str:
    """The entry as schedc/modulo_table.py writes it (within ruff's line length)."""
    body = pprint.pformat(found, width=88, compact=True)
    return f"    ({p}, {m}): " + body.replace("\n", "\n        ") + ","


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shapes", nargs="+", help="PxM, e.g. 5x8")
    ap.add_argument("--seconds", type=float, default=30.0, help="solver time per extra")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--extra-from", type=int, default=0, help="the least extra tried")
    args = ap.parse_args()
    for shape in args.shapes:
        p, m = map(int, shape.split("x"))
        bubble, caps = today(p, m)
        rows = math.lcm(max(2, -(-p // 2)), m)
        for extra in range(args.extra_from, 3 * rows):
            if extra / (3 * rows + extra) >= bubble - 1e-9:
                print(f"# {p}x{m}: nothing below today's {bubble:.4f}", file=sys.stderr)
                break
            found, status = solve(p, m, extra, caps, args.seconds, args.workers)
            print(f"# {p}x{m} extra {extra}: {status}", file=sys.stderr, flush=True)
            if found is not None:
                print(entry_text(p, m, found), flush=True)
                break


if __name__ == "__main__":
    main()
