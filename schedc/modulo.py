"""AMDP's order, constructed: a modulo schedule of the pipelines' chains.

N pipelines run over the same p ranks, each rank holding one stage of every
pipeline. One *iteration* admits one micro-batch into every pipeline (micro-
batch j runs on pipeline j mod N, so iteration n holds j = nN .. nN+N-1). A
micro-batch is a chain of 2p operations, F on stages 0..p-1 then B on stages
p-1..0 (unit costs F = 1, B = 2). The schedule is periodic: iteration n runs
operation x of pipeline k at n*II + offset[k] + start[x] on the rank holding
that stage, every chain sharing one template `start` (schedc.modulo_search
finds it on one period). Each rank does 3N units per iteration, so II = 3N
leaves no bubble at all; a longer II is taken only where the family's rules
leave no template at 3N. The rules are constraints on the template:
- in flight: stage 0 of a pipeline starts the forward of micro-batch u + 2
  before the backward of u (Megatron's warm-up of two; the Spec's bound at
  stage 0, 3 in schedc's count, which includes the forward being started);
- the step: every replica of a stage all-reduces and steps once per global
  batch, after the batch's last backward and before the next batch's first,
  at an instant no replica rank is inside an operation;
- memory: for the reference's shapes (p = 4, 8 with N = p/2), each rank's peak
  activations stay within the AMDP reference's (3 4 4 3; 7 8 8 7 7 8 8 7);
- versions: the Spec's inconsistency and delay bounds hold on the planned
  times (checked here in closed form over the steady state).
Where N does not divide m, a step falls between two pipelines of one
iteration, and with every pipeline's backward of a stage at one instant (the
closed forms) no step window exists. For the shapes of schedc.modulo_table a
template of the whole period (lcm(N, m) micro-batches, N / gcd(N, m) steps,
one row per micro-batch) found offline puts the steps only where batches end.
Otherwise, where no template lets the steps fall between pipelines, or where
few micro-batches per step would put two steps inside one micro-batch's
flight, each batch takes whole iterations (`Admission`): the pipelines without
one more micro-batch of the batch idle in its last ones.
The warm-up and the drain are the same timing, cut to the micro-batches that
exist; the order of every rank is its operations sorted by planned time.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

from schedc.graph import Problem
from schedc.modulo_search import Maps, Template, chain, templates
from schedc.modulo_table import tabled
from schedc.ops import Op, step_op
from schedc.spec import Spec

REFERENCE_ACTIVATIONS = {4: (3, 4, 4, 3), 8: (7, 8, 8, 7, 7, 8, 8, 7)}
WARMUP_INFLIGHT = 3  # forwards alive at stage 0 when one starts (Megatron warm-up 2 + 1)
MAX_TEMPLATES = 50  # templates of one kind whose versions are checked before the next kind
PADDING = 4  # whole-iteration admissions tried: ceil(m/N) .. ceil(m/N) + PADDING - 1
SEARCH_DEPTH = 8  # deepest pipeline searched at II = 3N before whole-iteration batches


@dataclass(frozen=True)
class ModuloPlan:
    """A constructed asynchronous order, ready to be cut to any batch count."""

    spec: Spec
    template: Template
    period_steps: int
    warmup_batches: int
    admission: Admission

    def orders(self, problem: Problem) -> tuple[list[list[Op]], dict[Op, int]]:
        """Every rank's order for `problem`'s batches, and each op's planned start."""
        return _orders(problem, self.template, self.admission)


@dataclass(frozen=True)
class Admission:
    """Which iteration admits micro-batch j (on pipeline j mod N), and after
    which iteration (and phase: pipelines before it belong to the old batch)
    each batch steps. `per_batch` 0: one micro-batch per pipeline per
    iteration throughout. Otherwise every batch takes `per_batch` whole
    iterations, pipelines without one more micro-batch of the batch idle in
    its last ones (a bubble of 1 - m / (per_batch N)): steps then fall between
    iterations."""

    n: int
    m: int
    per_batch: int = 0
    rows: int = 0  # a whole-period template (schedc.modulo_table): micro-batches per period

    def slot(self, j: int) -> tuple[int, int]:
        """(iteration, the template's row) of micro-batch j."""
        if self.rows:
            return divmod(j, self.rows)
        if not self.per_batch:
            return divmod(j, self.n)
        b, r = divmod(j, self.m)
        return b * self.per_batch + r // self.n, j % self.n

    def step(self, batch: int) -> tuple[int, int]:
        if self.rows:
            return divmod(batch, self.rows // self.m)
        if not self.per_batch:
            return divmod((batch + 1) * self.m, self.n)
        return (batch + 1) * self.per_batch, 0

    def batches_within(self, iterations: int) -> int:
        """Batches whose micro-batches start within `iterations` iterations, at least."""
        if self.rows:
            return -(-iterations * self.rows // self.m)
        if not self.per_batch:
            return -(-iterations * self.n // self.m)
        return -(-iterations // self.per_batch)


def applies(spec: Spec) -> bool:
    """AMDP's shape: several pipelines, no flush, 1F1B, one stage of every
    pipeline per rank, the backward whole, no fixed delay, an in-flight bound
    (if any) at stage 0 only."""
    return (not spec.flush and spec.num_pipelines > 1 and spec.order == "1f1b"
            and not spec.split_backward and spec.stages == spec.num_ranks
            and spec.fixed_delay is None and all(s == 0 for s, _ in spec.max_inflight))


def modulo_plan(spec: Spec) -> ModuloPlan | None:
    """The constructed plan of `spec`, or None where the construction does not apply."""
    if not applies(spec):
        return None
    sync = spec.dp_period if spec.dp_mode == "async-sparse" else 1
    return _plan(spec.resolved_directions(), spec.microbatches,
                 spec.inflight_bound(0) or WARMUP_INFLIGHT, spec.stashes,
                 spec.max_inconsistency, spec.max_delay, sync, spec)


@functools.lru_cache(maxsize=64)
def _plan(maps: Maps, m: int, inflight: int, stashes: bool, max_inc: int | None,
          max_delay: int | None, sync: int, spec: Spec) -> ModuloPlan | None:
    n, p = len(maps), len(maps[0])
    phases = tuple(sorted({(j * m) % n for j in range(n)}))
    caps = REFERENCE_ACTIVATIONS.get(p) if n == p // 2 else None
    # the pattern repeats every lcm(N, m) micro-batches, and the sparse data-parallel
    # exchange every `sync` steps
    period_steps = math.lcm(n // math.gcd(n, m), sync)
    for admission, found in _candidates(maps, m, phases, inflight, caps):
        for i, template in enumerate(found):
            if i == MAX_TEMPLATES:
                break
            warm = admission.batches_within(template.latency // template.ii + 2) + 1
            if _versions_within(maps, m, template, admission, warm + 2 * period_steps,
                                stashes, max_inc, max_delay):
                return ModuloPlan(spec, template, period_steps, warm, admission)
    return None


def _candidates(maps: Maps, m: int, phases: tuple[int, ...], inflight: int,
                caps: tuple[int, ...] | None):
    """(admission, templates) to try, the least bubble first: the closed forms
    with one micro-batch per pipeline per iteration (no bubble), a whole-period
    template of schedc.modulo_table (kept there only where it beats what
    follows), and for small p the search at II = 3N; then whole iterations per batch
    (`Admission.per_batch`, the bubble of the idle slots), so that steps fall
    between iterations; then the search at longer periods."""
    n, p = len(maps), len(maps[0])
    yield Admission(n, m), templates(maps, phases, inflight, caps, search=False)
    if phases != (0,):  # a whole period found offline: less bubble than what follows
        yield Admission(n, m, rows=math.lcm(n, m)), tabled(maps, m, inflight, caps)
    if p <= SEARCH_DEPTH:  # small: a search on one period at II = 3N is cheap
        yield Admission(n, m), templates(maps, phases, inflight, caps, longer=False)
    if phases != (0,) or m < 3 * n:
        for per_batch in range(-(-m // n), -(-m // n) + PADDING):
            yield Admission(n, m, per_batch), templates(maps, (0,), inflight, caps,
                                                         search=False)
            if p <= SEARCH_DEPTH:
                yield Admission(n, m, per_batch), templates(maps, (0,), inflight, caps,
                                                             longer=False)
    yield Admission(n, m), templates(maps, phases, inflight, caps)


def _versions_within(maps: Maps, m: int, template: Template, admission: Admission,
                     batches: int, stashes: bool, max_inc: int | None,
                     max_delay: int | None) -> bool:
    """Inconsistency (steps between a micro-batch's F and B on a stage; 0 with
    a stash) and delay (its batch minus the version its F reads) within the
    bounds, for every micro-batch near a batch boundary of `batches` batches
    (the others see no step in flight and read a later version)."""
    if max_inc is None and max_delay is None:
        return True
    n, p = len(maps), len(maps[0])
    ops = chain(p)
    f_at = {s: x for x, (kind, s, _) in enumerate(ops) if kind == "F"}
    b_at = {s: x for x, (kind, s, _) in enumerate(ops) if kind == "B"}
    # micro-batches in flight, at most (a template row per micro-batch of an iteration)
    reach = (template.latency // template.ii + 3) * len(template.offsets)
    for s in range(p):
        taus = [[_step_time(template, admission, b, s, k) for b in range(batches)]
                for k in range(n)]
        for b in range(batches):
            for j in range(max(0, b * m - reach), min(batches * m, b * m + reach)):
                it, row = admission.slot(j)
                k = j % n
                v_f = bisect.bisect_right(taus[k], template.time(row, f_at[s], it))
                v_b = v_f if stashes else bisect.bisect_right(
                    taus[k], template.time(row, b_at[s], it))
                if max_inc is not None and v_b - v_f > max_inc:
                    return False
                if max_delay is not None and j // m - v_f > max_delay:
                    return False
    return True


def _step_time(template: Template, admission: Admission, batch: int, stage: int,
               k: int) -> int:
    """When the rank holding pipeline k's replica of `stage` steps after `batch`."""
    it, phi = admission.step(batch)
    return it * template.ii + template.steps[phi][stage][k]


def _orders(problem: Problem, template: Template, admission: Admission
            ) -> tuple[list[list[Op]], dict[Op, int]]:
    """Each rank's operations and steps, sorted by planned time."""
    maps, p = problem.maps, problem.stages
    ops = chain(p)
    events: list[list[tuple[int, int, int, Op]]] = [[] for _ in range(problem.ranks)]
    n = len(maps)
    for j in range(problem.num_mbs):
        it, row = admission.slot(j)
        k = j % n
        for x, (kind, s, _) in enumerate(ops):
            t = template.time(row, x, it)
            events[maps[k][s]].append((t, 1, x, Op(kind, k, s, j)))
    for b in range(problem.batches):
        for s in range(p):
            for k, mp in enumerate(maps):
                events[mp[s]].append((_step_time(template, admission, b, s, k), 0, -s,
                                      step_op(s, b)))
    times = {op: t for ev in events for t, *_, op in ev}
    return [[op for *_, op in sorted(ev)] for ev in events], times
