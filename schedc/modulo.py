"""AMDP's order, constructed: a modulo schedule of the pipelines' chains.

N pipelines run over the same p ranks, each rank holding one stage of every
pipeline. One *iteration* admits one micro-batch into every pipeline (micro-
batch j runs on pipeline j mod N, so iteration n holds j = nN .. nN+N-1). A
micro-batch is a chain of 2p operations, F on stages 0..p-1 then B on stages
p-1..0 (unit costs F = 1, B = 2). The schedule is periodic: iteration n runs
operation x of pipeline k at n*II + offset[k] + start[x] on the rank holding
that stage, every chain sharing one template `start`. Each rank does 3N units
per iteration, so II = 3N leaves no bubble at all.

Finding the template is a small search on one period (`_search`): operations
are placed in chain order, each as early as the ranks' modulo reservation
tables allow, with at most a few units of waiting; a placement that leaves a
rank too few free windows for the backwards still to come is pruned. The
family's rules are constraints of the search:
- in flight: stage 0 of a pipeline starts the forward of micro-batch u + 2
  before the backward of u (Megatron's warm-up of two), never later ones:
  at most 3 forwards without their backward when a forward starts;
- the step: every replica of a stage all-reduces and steps once per global
  batch, after the batch's last backward and before the next batch's first,
  at an instant no replica rank is inside an operation (so no rank waits in
  the collective);
- memory: for p = 4 and 8, each rank's peak activations stay within the AMDP
  reference's (3 4 4 3; 7 8 8 7 7 8 8 7).
The warm-up and the drain are the same timing, cut to the micro-batches that
exist; the order of every rank is its operations sorted by planned time.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

from schedc.graph import Problem
from schedc.ops import Op, step_op
from schedc.spec import Spec

REFERENCE_ACTIVATIONS = {4: (3, 4, 4, 3), 8: (7, 8, 8, 7, 7, 8, 8, 7)}
WARMUP_INFLIGHT = 3  # forwards alive at stage 0 when one starts (Megatron warm-up 2 + 1)
MAX_WAIT = 3  # units of waiting the search tries before one operation
NODE_BUDGET = 200_000  # search nodes per structured offset candidate
SMALL_BUDGET = 1_000  # search nodes per other offset candidate
TOTAL_BUDGET = 60_000  # search nodes in all, then the caller list-schedules
MAX_STAGES = 16  # deeper pipelines are list-scheduled (the search grows with p * N)
OTHER_CANDIDATES = 100  # other offset candidates tried per initiation interval


@dataclass(frozen=True)
class Template:
    """One period of the modulo schedule."""

    ii: int
    offsets: tuple[int, ...]  # entry time of each pipeline within the iteration
    starts: tuple[int, ...]  # start of chain operation x relative to the entry
    steps: tuple[tuple[int, ...], ...]  # [phase][stage] step instant relative to iteration

    def time(self, k: int, x: int, iteration: int) -> int:
        return iteration * self.ii + self.offsets[k] + self.starts[x]


@dataclass(frozen=True)
class ModuloPlan:
    """A constructed asynchronous order, ready to be cut to any batch count."""

    spec: Spec
    template: Template
    period_steps: int
    warmup_batches: int

    def orders(self, problem: Problem) -> tuple[list[list[Op]], dict[Op, int]]:
        """Every rank's order for `problem`'s batches, and each op's planned start."""
        return _orders(problem, self.template)


def applies(spec: Spec) -> bool:
    """AMDP's shape: several pipelines, no flush, 1F1B, one stage of every
    pipeline per rank, the backward whole, no fixed delay or periodic DP."""
    return (not spec.flush and spec.num_pipelines > 1 and spec.order == "1f1b"
            and not spec.split_backward and spec.stages == spec.num_ranks
            and spec.fixed_delay is None and spec.dp_mode == "sync"
            and all(b >= WARMUP_INFLIGHT for s, b in spec.max_inflight if s == 0)
            and all(s == 0 for s, _ in spec.max_inflight))


def modulo_plan(spec: Spec) -> ModuloPlan | None:
    """The constructed plan of `spec`, or None where the construction does not
    apply or finds no template (the caller then list-schedules)."""
    if not applies(spec) or spec.stages > MAX_STAGES:
        return None
    maps = spec.resolved_directions()
    n = len(maps)
    phases = tuple(sorted({(j * spec.microbatches) % n for j in range(n)}))
    template = find_template(maps, phases)
    if template is None:
        return None
    m = spec.microbatches
    period_steps = n // math.gcd(n, m)  # the pattern repeats every lcm(N, m) micro-batches
    latency = template.starts[-1] + 2 + max(template.offsets)
    warm = -(-(latency // template.ii + 2) * n // spec.microbatches) + 1
    plan = ModuloPlan(spec, template, period_steps, warm)
    return plan if _within_bounds(plan) else None


def _within_bounds(plan: ModuloPlan) -> bool:
    """The Spec's inconsistency and delay bounds hold on the planned versions
    (few micro-batches per step put two steps inside a micro-batch's flight)."""
    from schedc.lower import plan_versions

    spec = plan.spec
    problem = Problem.of(spec, plan.warmup_batches + 2 * plan.period_steps)
    orders, _ = plan.orders(problem)
    reads = plan_versions(problem, orders).reads
    for op, version in reads.items():
        if op.kind != "F":
            continue
        back = reads[op._replace(kind="B")]
        if spec.max_inconsistency is not None and back - version > spec.max_inconsistency:
            return False
        if spec.max_delay is not None and problem.batch_of(op.mb) - version > spec.max_delay:
            return False
    return True


@functools.cache
def find_template(maps: tuple[tuple[int, ...], ...], phases: tuple[int, ...]
                  ) -> Template | None:
    """The template of least II (then least waiting) the search finds."""
    p, n = len(maps[0]), len(maps)
    caps = REFERENCE_ACTIVATIONS.get(p) if n == p // 2 else None
    spent = [0]
    for ii in range(max(2, 3 * n), 6 * n + 1):
        structured = list(_offset_candidates(maps, ii))
        others = (offs for offs in _all_offsets(n, ii) if offs not in structured)
        for offsets, budget in itertools.chain(
                ((o, NODE_BUDGET) for o in structured),
                ((o, SMALL_BUDGET) for o in itertools.islice(others, OTHER_CANDIDATES))):
            budget = min(budget, TOTAL_BUDGET - spent[0])
            if budget <= 0:
                return None
            found = _search(maps, ii, offsets, phases, caps, budget, spent)
            if found is not None:
                return found
    return None


def _all_offsets(n: int, ii: int):
    """Every entry-offset vector with pipeline 0 at 0, pairs of equal offsets
    (pipelines entering together) first."""
    paired = (tuple(o for o in pair for _ in range(2))[:n]
              for pair in itertools.product(range(ii), repeat=-(-n // 2)) if pair[0] == 0)
    yield from paired
    yield from ((0, *rest) for rest in itertools.product(range(ii), repeat=n - 1))


def _offset_candidates(maps: tuple[tuple[int, ...], ...], ii: int):
    """Entry offsets worth trying: mirror pairs enter together (their ranks'
    depths are complementary), pairs or rotations spread evenly over the
    period; then every pipeline spread evenly."""
    n = len(maps)
    p = len(maps[0])
    seen = set()
    mirror = {}
    # pair each pipeline with the one whose map runs the other way over the same ranks
    for k, m in enumerate(maps):
        for k2, m2 in enumerate(maps):
            if k2 != k and {(m[s], m2[s]) for s in range(p)} == {
                    (m2[s], m[s]) for s in range(p)}:
                mirror[k] = k2
    groups: list[list[int]] = []
    done: set[int] = set()
    for k in range(n):
        if k in done:
            continue
        g = [k] + ([mirror[k]] if k in mirror and mirror[k] not in done else [])
        done.update(g)
        groups.append(g)
    for spread in (ii // len(groups), (ii - 2) // max(1, len(groups) - 1) if len(groups) > 1
                   else 0, 0, 1, 2):
        offs = [0] * n
        for gi, g in enumerate(groups):
            for k in g:
                offs[k] = (gi * spread) % ii
        cand = tuple(offs)
        if cand not in seen:
            seen.add(cand)
            yield cand
    for spread in range(0, ii // max(1, n - 1) + 1):
        cand = tuple((k * spread) % ii for k in range(n))
        if cand not in seen:
            seen.add(cand)
            yield cand


def _chain(p: int) -> list[tuple[str, int, int]]:
    return [("F", s, 1) for s in range(p)] + [("B", s, 2) for s in reversed(range(p))]


def _search(maps, ii: int, offsets: tuple[int, ...], phases: tuple[int, ...],
            caps: tuple[int, ...] | None, budget: int, spent: list[int]) -> Template | None:
    p, n = len(maps[0]), len(maps)
    chain = _chain(p)
    full = (1 << ii) - 1
    occ = [0] * p
    starts = [0] * len(chain)
    # backwards each rank still has to host (one per pipeline per stage it holds)
    b_left = [n] * p
    nodes = [0]
    latest_b0 = WARMUP_INFLIGHT * ii - 1  # B0 must start within 3 periods of F0

    def mask(t: int, d: int) -> int:
        t %= ii
        m = ((1 << d) - 1) << t
        return (m | (m >> ii)) & full

    def windows(m: int) -> int:
        """Disjoint free 2-unit windows on the ring."""
        free = ~m & full
        if free == full:
            return ii // 2
        z = (m & -m).bit_length() - 1
        count = run = 0
        for x in range(1, ii + 1):
            if (free >> ((z + x) % ii)) & 1:
                run += 1
            else:
                count += run // 2
                run = 0
        return count + run // 2

    def place(x: int, t: int) -> list[tuple[int, int]] | None:
        kind, s, d = chain[x]
        taken = []
        for k in range(n):
            r = maps[k][s]
            mm = mask(offsets[k] + t, d)
            if occ[r] & mm:
                for r2, m2 in taken:
                    occ[r2] &= ~m2
                return None
            occ[r] |= mm
            taken.append((r, mm))
        return taken

    def dfs(x: int) -> Template | None:
        nodes[0] += 1
        if nodes[0] > budget:
            return None
        if x == len(chain):
            return _finish(maps, ii, offsets, tuple(starts), phases, caps)
        kind, s, d = chain[x]
        prev = starts[x - 1] + chain[x - 1][2] if x else 0
        for t in range(prev, prev + (MAX_WAIT + 1 if x else 1)):
            if x == len(chain) - 1 and t > latest_b0:
                break
            taken = place(x, t)
            if taken is None:
                continue
            if kind == "B":
                for r, _ in taken:
                    b_left[r] -= 1
            ok = kind == "F" or all(windows(occ[r]) >= b_left[r] for r in range(p))
            if ok:
                starts[x] = t
                found = dfs(x + 1)
                if found is not None:
                    return found
            if kind == "B":
                for r, _ in taken:
                    b_left[r] += 1
            for r, mm in taken:
                occ[r] &= ~mm
        return None

    try:
        return dfs(0)
    finally:
        spent[0] += nodes[0]


def _finish(maps, ii: int, offsets, starts, phases, caps) -> Template | None:
    """Step instants for every phase, and the memory caps; None if either fails."""
    p, n = len(maps[0]), len(maps)
    chain = _chain(p)
    b_index = {s: x for x, (kind, s, _) in enumerate(chain) if kind == "B"}
    straddle = [set() for _ in range(p)]  # instants (mod ii) inside a B on that rank
    for k in range(n):
        for x, (_, s, d) in enumerate(chain):
            if d == 2:
                straddle[maps[k][s]].add((offsets[k] + starts[x] + 1) % ii)
    steps = []
    for phi in range(n):
        if phi not in phases:
            steps.append(())
            continue
        row = []
        earlier = [offsets[k] for k in range(phi)] + [offsets[k] - ii for k in range(phi, n)]
        later = [offsets[k] for k in range(phi, n)] + [offsets[k] + ii for k in range(phi)]
        for s in range(p):
            lo = max(earlier) + starts[b_index[s]] + 2
            hi = min(later) + starts[b_index[s]]
            reps = [maps[k][s] for k in range(n)]
            tau = next((t for t in range(lo, hi + 1)
                        if all(t % ii not in straddle[r] for r in reps)), None)
            if tau is None:
                return None
            row.append(tau)
        steps.append(tuple(row))
    template = Template(ii, tuple(offsets), tuple(starts), tuple(steps))
    if caps is not None and any(a > c for a, c in zip(peak_activations(maps, template), caps,
                                                        strict=True)):
        return None
    return template


def peak_activations(maps, template: Template) -> list[int]:
    """Steady-state peak of forwards without their backward, per rank, counted
    when a forward starts (as the verifier counts)."""
    p, n = len(maps[0]), len(maps)
    chain = _chain(p)
    f_at = {s: x for x, (kind, s, _) in enumerate(chain) if kind == "F"}
    b_at = {s: x for x, (kind, s, _) in enumerate(chain) if kind == "B"}
    peaks = [0] * p
    for r in range(p):
        held = [(k, s) for k in range(n) for s in range(p) if maps[k][s] == r]
        for k0, s0 in held:
            t = template.time(k0, f_at[s0], 10)
            alive = 0
            for k, s in held:
                for it in range(10 - 4, 11):
                    if template.time(k, f_at[s], it) <= t < template.time(k, b_at[s], it) or (
                            (k, s, it) == (k0, s0, 10)):
                        alive += 1
            peaks[r] = max(peaks[r], alive)
    return peaks


def _orders(problem: Problem, template: Template
            ) -> tuple[list[list[Op]], dict[Op, int]]:
    """Each rank's operations and steps, sorted by planned time."""
    maps, p, n, m = problem.maps, problem.stages, problem.num_pipelines, problem.m
    chain = _chain(p)
    events: list[list[tuple[int, int, int, Op]]] = [[] for _ in range(problem.ranks)]
    for j in range(problem.num_mbs):
        it, k = divmod(j, n)
        for x, (kind, s, _) in enumerate(chain):
            t = template.time(k, x, it)
            events[maps[k][s]].append((t, 1, x, Op(kind, k, s, j)))
    for b in range(problem.batches):
        it, phi = divmod((b + 1) * m, n)
        for s in range(p):
            tau = it * template.ii + template.steps[phi][s]
            for r in sorted({mp[s] for mp in maps}):
                events[r].append((tau, 0, -s, step_op(s, b)))
    times = {op: t for ev in events for t, *_, op in ev}
    return [[op for *_, op in sorted(ev)] for ev in events], times
