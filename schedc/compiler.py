"""The compiler driver: Spec -> graph -> order -> lower -> verify -> programs.

`compile_spec` is the whole flow; every compile runs the verifier, so a
returned `Compiled` holds programs that are proven complete, dependency-
respecting, deadlock-free and within the Spec's bounds.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from schedc import __version__
from schedc.analysis import analyse, analysed_repeats
from schedc.deadlock import check_deadlock_free, place_receives
from schedc.errors import VerifyError
from schedc.fallback import candidate_policies, search_programs
from schedc.graph import Problem, add_order_edges, build_graph, check_acyclic
from schedc.instructions import FREES_ACTIVATION, STORES_ACTIVATION
from schedc.lower import lower
from schedc.modulo import ModuloPlan, modulo_plan
from schedc.order import (
    DEFAULT_POLICY,
    Dependencies,
    OrderError,
    Policy,
    distinct_orders,
    interleaved_order,
    order_ops,
)
from schedc.periodic import split_run
from schedc.program import Instr, Manifest, Period, RankProgram, shift_all
from schedc.replay import ReplayDeadlock, ReplayMismatch
from schedc.spec import Spec
from schedc.timing import unit_timing
from schedc.unroll import Unrolled
from schedc.verify import ASYNC_REPEATS, verify
from schedc.version_table import VersionTable

if TYPE_CHECKING:  # networkx is imported only where a graph is built (schedc.graph)
    import networkx as nx


@dataclass(frozen=True)
class Compiled:
    spec: Spec
    manifest: Manifest
    programs: tuple[RankProgram, ...]
    policy: Policy = DEFAULT_POLICY  # the ordering policy these programs used


@dataclass(frozen=True)
class Lowered:
    problem: Problem
    graph: nx.DiGraph
    streams: list[list[Instr]]


def lower_batches(spec: Spec, batches: int, check_order: bool = False,
                  policy: Policy | None = None) -> Lowered:
    """Build, order and lower the schedule for `batches` optimizer steps.

    check_order runs a cycle search over the graph with order edges (a quick
    diagnostic naming the cycle). It is off by default: the verifier's replay
    proves the same property of the final programs (every op runs after its
    inputs in an execution that completes), and the search costs about a
    quarter of a large compile."""
    problem = Problem.of(spec, batches)
    graph = build_graph(problem)
    streams = _lowered(spec, batches, policy, graph, check_order)
    return Lowered(problem, graph, streams)


def _lowered(spec: Spec, batches: int, policy: Policy | None = None,
             graph: nx.DiGraph | None = None, check_order: bool = False,
             repair: bool = True) -> list[list[Instr]]:
    """lower_batches' streams; without `graph`, the list scheduler reads the
    dependencies without networkx (order.Dependencies) and a constructed
    (modulo) order reads none. `repair=False`: receives in send order but no
    repairing replay (place_receives; _proven_unrepaired)."""
    problem = Problem.of(spec, batches)
    if policy is None:
        policy = choose_policy(spec)
    plan = modulo_plan(spec)
    times = None
    if plan is not None:
        orders, times = plan.orders(problem)
    elif spec.order == "interleaved":  # written out: no dependencies to read
        orders = interleaved_order(problem)
    else:
        orders = order_ops(Problem.of(_list_spec(spec) or spec, batches),
                           graph if graph is not None else Dependencies(problem), policy)
    if check_order and graph is not None:
        add_order_edges(graph, orders)
        cycle = check_acyclic(graph)
        if cycle:
            raise VerifyError("the order contradicts the dependencies: cycle "
                              + " -> ".join(op.label() for op in cycle[:8]))
    streams = lower(problem, orders, times)
    if times is None:
        del orders  # freed before the receives' replay (memory of a long run)
        place_receives(streams, repair)
    # else a constructed schedule, whose receives lower posts by the planned
    # times: deadlock-free by construction, nothing to repair (the replay was
    # a fifth of AMDP's split; tests/compiler/test_construct.py checks that
    # place_receives leaves such runs as they are). The verifier proves it.
    return streams


FINALISTS = 3
# Above this many (stage, micro-batch) pairs the portfolio is not tried: it
# costs 18 list schedules and 3 lowerings, several times the compile itself.
PORTFOLIO_LIMIT = 512


def choose_policy(spec: Spec) -> Policy:
    """The ordering policy: the family's own rule, except for synchronous
    schedules of several pipelines (Chimera). Those list-schedule the order
    portfolio on one period; the best FINALISTS by the greedy's makespan are
    lowered and timed (unit costs), and the least makespan, then the least
    peak memory, is kept; above PORTFOLIO_LIMIT, large_policy's rule picks the
    policy at once. Nothing is verified twice: the chosen programs are
    proven once by compile_with."""
    return _choose(spec)[0]


def large_policy(spec: Spec) -> Policy:
    """Chimera's policy where the portfolio is too dear, by micro-batches per
    stage: every rank takes its steps when idle; m <= p: the oldest
    micro-batch first; 2p <= m < 4p: forwards first, up to twice 1F1B's
    in-flight count; otherwise forwards first, 1.5 times. Lowered and timed
    under unit costs against all 18 policies (2026-11-29) at 14 sizes above
    the limit (32 x 17, 32 x 32, 20 x 26, 18 x 29, 16 x 33, 12 x 43, 24 x 48,
    10 x 52, 32 x 64, 16 x 64, 12 x 96, 8 x 128, 16 x 128, 32 x 256), the
    rule's order had the least makespan, or one within 1% of it, at 12 (3%
    and 10% longer at 12 x 43 and 18 x 29, where the portfolio picks the same
    order); it was never more than 1% longer than the portfolio's pick, and
    up to 16% shorter (1070 against 1269 at 32 x 256: the portfolio ranks its
    finalists by the greedy's makespan, which does not see how receives are
    batched)."""
    m, p = spec.microbatches, spec.stages
    if m <= p:
        return Policy("mb", 1.0, steps_first=False)
    return Policy("forward-first", 2.0 if 2 * p <= m < 4 * p else 1.5, steps_first=False)


def _choose(spec: Spec) -> tuple[Policy, list[list[Instr]] | None]:
    """choose_policy, with the chosen finalist's lowered streams (None where
    the family's own rule is the policy): compile_with need not lower it again."""
    if spec.num_pipelines == 1 or not spec.flush or spec.order == "interleaved":
        return DEFAULT_POLICY, None
    problem = Problem.of(spec, _sync_period(spec))
    if spec.stages * spec.microbatches > PORTFOLIO_LIMIT:
        policy = large_policy(spec)
        try:
            return policy, _lowered(spec, problem.batches, policy)
        except (OrderError, VerifyError):
            pass  # this order cannot be lowered deadlock-free: the portfolio
    best: tuple[float, int, int] | None = None
    chosen, lowered = DEFAULT_POLICY, None
    for i, (_, policy, orders) in enumerate(distinct_orders(problem, Dependencies(problem))):
        if i == FINALISTS:
            break
        streams = lower(problem, orders)
        try:
            place_receives(streams)
        except VerifyError:
            continue  # the receives cannot be placed for this order; the next one
        score = (unit_timing(streams).makespan, _peak_inflight(streams), i)
        if best is None or score < best:
            best, chosen, lowered = score, policy, streams
    # compile_with lowers a Spec that _list_spec changes itself
    return chosen, lowered if _list_spec(spec) is None else None


def _peak_inflight(streams: list[list[Instr]]) -> int:
    """Most forwards without their backward on any rank (activation memory)."""
    peak = 0
    for seq in streams:
        alive = 0
        for ins in seq:
            alive += 1 if ins.op in STORES_ACTIVATION else -1 if ins.op in FREES_ACTIVATION else 0
            peak = max(peak, alive)
    return peak


def warmup_batches(spec: Spec) -> int:
    """Batches enough for an asynchronous schedule to reach its steady state."""
    in_flight = 2 * (spec.stages + 1) * max(1, spec.num_pipelines // 2)
    return -(-in_flight // spec.microbatches) + 3


def compile_spec(spec: Spec) -> Compiled:
    """Compile and verify `spec`: one order, one lowering, one proof."""
    spec.validate()
    with few_collections(pause=True):
        return compile_with(spec, *_choose(spec))


# Young objects between the cycle collector's runs while compiling (Python's
# default: 700), and how rarely the older generations are swept.
COMPILE_GC_THRESHOLDS = (100_000, 50, 100)


@contextmanager
def few_collections(pause: bool = False) -> Iterator[None]:
    """Python's cycle collector, run less often: a compile allocates millions
    of instructions and tuples that live until the end, and the default
    thresholds sweep them again and again (a fifth of a large compile's time).
    Cycles are still collected; the thresholds are restored afterwards.

    `pause` stops the collector altogether, as for a compile: the one-order
    compile leaves next to no cyclic garbage (a few hundred objects; peak
    memory equal with and without the collector at 32 x 256 and, for PACI,
    64 x 1024), while every collection walks the young objects, every one of
    the millions made (about 10% of a large compile's CPU time). Reference
    counting still frees everything. The fallback search, which swallows
    errors and leaves cycles behind, runs `collecting()`."""
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(*COMPILE_GC_THRESHOLDS)
    if pause:
        gc.disable()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if enabled:
            gc.enable()


@contextmanager
def collecting() -> Iterator[None]:
    """The collector on again inside a paused compile (few_collections'
    thresholds), for the fallback search: each VerifyError it swallows leaves
    cyclic garbage (thousands of objects at AMDP 4 x 8 with split backward)."""
    paused = not gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if paused:
            gc.disable()


# A refusal that names a declared bound is the user's to change: no search for another order.
BOUND_PREFIXES = ("max_inflight", "max_inconsistency", "max_delay", "max_activations",
                  "versions")


def compile_with(spec: Spec, policy: Policy, lowered: list[list[Instr]] | None = None
                 ) -> Compiled:
    """Compile `spec` under `policy`; `lowered`: a synchronous spec's streams
    already lowered under that policy (choose_policy's finalist)."""
    if not spec.flush and spec.num_pipelines > 1 and modulo_plan(spec) is None:
        return _compile_fallback(spec)
    if not spec.flush:
        proven = _proven_unrepaired(spec, policy)
        if proven is not None:
            return _analysed(spec, policy, *proven)
    if spec.flush:
        k = _sync_period(spec)
        period = Period(microbatches=k * spec.microbatches, steps=k)
        streams = lowered if lowered is not None else _lowered(spec, k, policy)
        programs = [RankProgram(r, body=tuple(s)) for r, s in enumerate(streams)]
        construction = "list"
        folds = 0
    else:
        programs, period, construction, folds = _split_programs(spec, policy)
    manifest = _manifest(spec, programs, period)
    try:
        programs, table = _verify_folding(manifest, programs, folds)
    except VerifyError as exc:
        if spec.flush or exc.reason.startswith(BOUND_PREFIXES):
            raise
        return _compile_fallback(spec)  # an edge the one-run construction misses (p4 m1)
    return _analysed(spec, policy, programs, manifest, table, construction)


def _analysed(spec: Spec, policy: Policy, programs: list[RankProgram], manifest: Manifest,
              table: VersionTable, construction: str) -> Compiled:
    analysis = analyse(manifest, programs, table)
    analysis["order_policy"] = ({"construction": "modulo"} if construction == "modulo"
                                else policy.describe())
    manifest = replace(manifest, analysis=analysis)
    return Compiled(spec, manifest, tuple(programs), policy)


def _proven_unrepaired(spec: Spec, policy: Policy
                       ) -> tuple[list[RankProgram], Manifest, VersionTable, str] | None:
    """The list-scheduled asynchronous programs from a run whose receives
    place_receives' replay did not repair, once the verifier proves them
    without folding: the verifier's run of as many bodies as the lowered run
    holds is that run itself (split_run takes it apart exactly), so it
    completes without a wait or a mismatch, and the repairing replay, which
    changes a run only where it waits or mismatches, would have left it as it
    is: the same programs, without that replay (about a tenth of a large
    compile). None otherwise (any refusal, a fold, a run longer than the
    verifier's): the caller compiles with the repair.

    The run one body shorter is tried first (split_run's one_body): a
    quarter to a third less to lower and split. Where the verifier proves
    it, its programs are those of the run a body longer, the longer run
    being this one with a body more in the middle
    (tests/compiler/test_one_body.py); where not, that run is lowered. A
    constructed (modulo) run, never repaired, is tried here only a body
    short; its longer runs are compile_with's."""
    constructed = modulo_plan(spec) is not None
    for one_body in (True,) if constructed else (True, False):
        try:
            split = _split_programs(spec, policy, repair=False, one_body=one_body)
        except (VerifyError, OrderError):
            continue
        proven = _proven_split(spec, *split)
        if proven is not None:
            return proven
    return None


def _proven_split(spec: Spec, programs: list[RankProgram], period: Period, construction: str,
                  bodies: int) -> tuple[list[RankProgram], Manifest, VersionTable, str] | None:
    """A split with its manifest and version table, once the verifier proves
    it unfolded; None otherwise (_proven_unrepaired)."""
    if not 1 <= bodies <= ASYNC_REPEATS[-1]:
        return None
    manifest = _manifest(spec, programs, period)
    try:
        table = verify(manifest, programs, analysed_repeats(manifest))
    except VerifyError:
        return None
    return programs, manifest, table, construction


def _compile_fallback(spec: Spec) -> Compiled:
    """Several asynchronous pipelines the construction does not cover
    (schedc.fallback): the first verified (policy, period) is kept."""
    with collecting():
        return _search_fallback(spec)


def _search_fallback(spec: Spec) -> Compiled:
    warm = warmup_batches(spec)
    policies = candidate_policies(spec, _list_spec(spec) or spec, 3 * warm)
    proven: dict[str, object] = {}

    def prove(programs: list[RankProgram], period: Period) -> None:
        manifest = _manifest(spec, programs, period)
        proven["manifest"], proven["table"] = manifest, verify(
            manifest, programs, analysed_repeats(manifest))

    programs, period, policy = search_programs(
        spec, policies, warm, _sync_period(spec),
        lambda n, pol: _lowered(spec, n, pol), prove)
    manifest = proven["manifest"]
    analysis = analyse(manifest, programs, proven["table"])
    analysis["order_policy"] = policy.describe()
    return Compiled(spec, replace(manifest, analysis=analysis), tuple(programs), policy)


def _sync_period(spec: Spec) -> int:
    """Steps after which instructions that recur every few steps line up."""
    return spec.dp_period if spec.dp_mode == "async-sparse" else 1


# programs, period, construction, and the body repetitions the run validated
Split = tuple[list[RankProgram], Period, str, int]


def _periodic_programs(spec: Spec, policy: Policy, long_run: bool = False
                       ) -> tuple[list[RankProgram], Period, str]:
    """_split_programs with the short runs folded (_fold_short_runs)."""
    programs, period, construction, validated = _split_programs(spec, policy, long_run)
    return _fold_short_runs(programs, period, validated), period, construction


def _split_programs(spec: Spec, policy: Policy, long_run: bool = False,
                    repair: bool = True, one_body: bool = False) -> Split:
    """Prologue, body and epilogue of an asynchronous schedule, from one run.

    The order is built once for enough batches to pass the warm-up and repeat
    the steady state a few times (a modulo schedule for AMDP, whose period is
    known by construction; the family's list-scheduling rule otherwise, whose
    steady state repeats every step, or every few steps where micro-batches do
    not divide evenly over the pipelines). The lowered run is split where it
    repeats itself (periodic.split_run); the verifier then proves the programs.
    Where a step holds more micro-batches than the pipelines keep in flight,
    the run is as short as the split allows (_short_list_programs); long_run
    lowers the longer run of earlier versions (the tests compare the two).
    """
    plan = modulo_plan(spec)
    if plan is not None:
        k = plan.period_steps
        period = Period(microbatches=k * spec.microbatches, steps=k)
        if one_body:  # _modulo_runs' shortest, (SHORT_BODIES + 1) periods, less a body
            streams = _lowered(spec, SHORT_BODIES * k, policy)
            programs, extra = split_run(streams, SHORT_BODIES, period, one_body=True)
            return programs, period, "modulo", SHORT_BODIES - extra
        runs = _modulo_runs(plan, long_run)
        for batches in runs:
            streams = _lowered(spec, batches, policy)
            try:
                programs, extra = split_run(streams, batches // k, period)
            except VerifyError:
                if batches == runs[-1]:
                    raise
                continue  # too short to settle: the next run
            if batches // k - extra >= SHORT_BODIES or batches == runs[-1]:
                return programs, period, "modulo", batches // k - extra
    base = _list_period(spec)
    # A step of many micro-batches (more than the pipelines hold in flight)
    # repeats every step; fewer may need a few steps to line up.
    in_flight = 2 * spec.stages * spec.num_pipelines
    longest = 1 if spec.microbatches >= in_flight else LIST_PERIODS[-1]
    if longest == 1 and not long_run:
        short = _short_list_programs(spec, policy, base, repair, one_body)
        if short is not None:
            return short
    if one_body:
        raise VerifyError("no run of one body shows where it starts")
    batches = warmup_batches(spec) + 3 * longest * base
    batches += -batches % (longest * base)
    streams = _lowered(spec, batches, policy, repair=repair)
    # The first period that repeats on every rank.
    for j in LIST_PERIODS[:longest]:
        k = j * base
        period = Period(microbatches=k * spec.microbatches, steps=k)
        try:
            programs, extra = split_run(streams, batches // k, period)
        except VerifyError:
            if j == longest:
                raise
            continue
        if batches // k - extra >= 2 or j == longest:
            return programs, period, "list", batches // k - extra
    raise AssertionError("unreachable")


# Periods of the short run beyond its warm-up and drain: the split needs two
# bodies to see the run repeat.
SHORT_BODIES = 2


def _modulo_runs(plan: ModuloPlan, long_run: bool = False) -> list[int]:
    """Batches of the runs a modulo schedule is lowered for, shortest first,
    until one shows the body SHORT_BODIES times. A modulo schedule repeats
    from its warm-up on, and the plan's warm-up count bounds it from above
    (often a period more than needed): the shortest run that can show two
    bodies (a period of warm-up and drain), two periods past the bound, four
    (the long run: four only)."""
    k = plan.period_steps
    runs = {-(-(plan.warmup_batches + bodies * k) // k) * k
            for bodies in ((4,) if long_run else (SHORT_BODIES, 4))}
    if not long_run:
        runs.add((SHORT_BODIES + 1) * k)
    return sorted(runs)


def _short_list_programs(spec: Spec, policy: Policy, base: int, repair: bool = True,
                         one_body: bool = False) -> Split | None:
    """The list-scheduled asynchronous programs from the shortest run that
    shows the steady state twice: a warm-up of at most one step (a step holds
    more micro-batches than are in flight), the forwards' fixed delay, two
    bodies and the drain. The list scheduler decides each op from what ran
    before it, so a longer run is this run with more bodies in the middle: the
    split finds the same prologue, body and epilogue. None when the run shows
    fewer than two bodies (the caller lowers the long run).

    `one_body`: the run a body shorter, which shows the body once
    (split_run's one_body): a quarter to a third less to lower and split,
    taken only where the verifier proves it (_proven_unrepaired)."""
    period = Period(microbatches=base * spec.microbatches, steps=base)
    least = 1 if one_body else SHORT_BODIES
    batches = (1 + (spec.fixed_delay or 0) + least) * base
    streams = _lowered(spec, batches, policy, repair=repair)
    try:
        programs, extra = split_run(streams, batches // base, period, one_body)
    except VerifyError:
        return None
    bodies = batches // base - extra
    if bodies < least:
        return None
    return programs, period, "list", bodies


def _list_spec(spec: Spec) -> Spec | None:
    """AMDP list-scheduled (deeper than the construction searches, or no
    template found): stage 0 admits the next forward only after a backward
    (two alive, one fewer than the Spec allows), which keeps the list
    scheduler's order deadlock-free and within the bounds."""
    if spec.num_pipelines > 1 and (spec.inflight_bound(0) or 0) > 2:
        return spec.with_(max_inflight=tuple((s, 2 if s == 0 else b)
                                             for s, b in spec.max_inflight))
    return None


LIST_PERIODS = (1, 2, 3, 4)


def _list_period(spec: Spec) -> int:
    """Steps per period of a list-scheduled asynchronous order: one step's
    micro-batches must also be a whole number of rounds over the pipelines."""
    n = spec.num_pipelines
    rounds = n // math.gcd(n, spec.microbatches)
    return _sync_period(spec) * rounds


def _verify_folding(manifest: Manifest, programs: list[RankProgram], folds: int
                    ) -> tuple[list[RankProgram], VersionTable]:
    """verify, folding short runs as _fold_short_runs does, with the
    verifier's own run of one body as the check (no replay of its own): while
    that run deadlocks or mismatches and folds are left, fold once more."""
    while True:
        try:
            return programs, verify(manifest, programs, analysed_repeats(manifest))
        except (ReplayDeadlock, ReplayMismatch) as exc:
            if getattr(exc, "repeats", None) != 1 or folds == 0:
                raise
            programs = [_fold_one(p, manifest.period) for p in programs]
            folds -= 1


def _fold_short_runs(programs: list[RankProgram], period: Period, validated: int
                     ) -> list[RankProgram]:
    """Runs shorter than the one lowered were never scheduled as such: when the
    shortest (one body) would not complete (a receive placed for a longer run),
    move whole bodies into the prologue until it does. Longer runs repeat the
    same body; the verifier proves them all."""
    for _ in range(validated):
        un = Unrolled.of(programs, period, 1)
        try:
            check_deadlock_free(un.streams, un.locate)
            return programs
        except VerifyError:
            programs = [_fold_one(p, period) for p in programs]
    return programs


def _fold_one(prog: RankProgram, period: Period) -> RankProgram:
    """The same runs, with body repetition 0 moved into the prologue."""
    shift = (period.microbatches, period.steps)
    return RankProgram(prog.rank, prog.prologue + prog.body, tuple(shift_all(prog.body, *shift)),
                       tuple(shift_all(prog.epilogue, *shift)))


def _manifest(spec: Spec, programs: list[RankProgram], period: Period) -> Manifest:
    return Manifest(
        spec=spec.to_dict(),
        spec_hash=spec.hash(),
        world_size=spec.num_ranks,
        num_stages=spec.stages,
        num_pipelines=spec.num_pipelines,
        stage_to_rank=spec.resolved_directions(),
        period=period,
        synchronous=spec.flush,
        analysis={"compiler": f"schedc {__version__}"},
    )
