"""The template of AMDP's modulo schedule: one period, constructed or searched.

N pipelines run over the same p ranks. Iteration n admits micro-batch nN + k
into pipeline k at n*II + offset[k]; its chain F(0..p-1), B(p-1..0) (unit
costs F = 1, B = 2) follows the pipeline's row of `starts`. A rank does 3N
units per iteration, so II = 3N leaves no bubble: then every rank's operations
must tile the period exactly.

`templates` yields candidates, the least II first:
- closed forms (`constructed`) at II = 3N for the maps of
  `directions.auto_directions`: the rotation cells (`_rotation_cells`: with
  rotations by even shifts a rank holds the stages of one parity, and a
  two-stage cell's forwards and backwards take one residue mod 3 each side, so
  each parity tiles the period), cut to odd p by taking ranks out of the even
  template, and the mirror cells of p = 4P, P odd (`_mirror_cells`);
- otherwise a depth-first search over one chain shared by every pipeline,
  each operation as early as the ranks' tables allow with a few units of
  waiting, pruned by stage 0's in-flight deadline (B(0) within `inflight`
  periods of F(0)) and by the free two-unit windows a rank still needs for its
  backwards; ranks hosting the same (stage, offset) multiset form one *class*
  and are checked once; a node budget bounds it, and longer periods follow.
Every candidate is checked whole (`_finish`): chains in order, the deadline,
each rank's table, a step instant for every phase and stage (the replicas of a
stage all-reduce at an instant none of them is inside an operation, after the
last backward of one batch and before the first of the next), and the
reference's peak activations where given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schedc.instructions import UNIT_COSTS, schedule_compute_ops

Maps = tuple[tuple[int, ...], ...]

MAX_WAIT = 3  # units of waiting tried before one operation at II = 3N
NODE_BUDGET = 20_000  # search nodes per offsets at II = 3N
LONG_BUDGET = 1_000  # search nodes per (II, offsets) above 3N


@dataclass(frozen=True)
class Template:
    """One period of the modulo schedule."""

    ii: int
    # A row per pipeline (or, for a whole-period template of schedc.modulo_table,
    # per micro-batch of the period, row u on pipeline u mod N):
    offsets: tuple[int, ...]  # entry time of each row within the iteration
    starts: tuple[tuple[int, ...], ...]  # [row][x]: start of chain op x after the entry
    # [phase][stage][pipeline]: the step instant, relative to the iteration, on
    # the rank holding that replica (today one instant for all replicas); the
    # phase: where the batch ends within the iteration (a whole period: which batch)
    steps: tuple[tuple[tuple[int, ...], ...], ...]

    def time(self, k: int, x: int, iteration: int) -> int:
        return iteration * self.ii + self.offsets[k] + self.starts[k][x]

    @property
    def latency(self) -> int:
        """From a pipeline's entry to the end of its last backward, at most."""
        return max(o + s[-1] + 2 for o, s in zip(self.offsets, self.starts, strict=True))


def chain(p: int) -> list[tuple[str, int, int]]:
    """(kind, stage, duration) of a micro-batch's operations, in order: the
    forward down the stages, then the whole backward up (the instruction
    table's ops and unit costs)."""
    return [(_F, s, _COST[_F]) for s in range(p)] + [(_B, s, _COST[_B]) for s in reversed(range(p))]


_F, _B = schedule_compute_ops(False)  # constructed schedules do not split the backward
_COST = {k: int(UNIT_COSTS[k]) for k in (_F, _B)}


def templates(maps: Maps, phases: tuple[int, ...], inflight: int,
              caps: tuple[int, ...] | None, search: bool = True, longer: bool = True):
    """The closed forms that hold (`search` False), or the searched templates in
    order of II (the least first, only 3N unless `longer`), several per II."""
    n, p = len(maps), len(maps[0])
    if not search:
        for ii, offsets, starts in constructed(maps, phases):
            found = _finish(maps, ii, offsets, starts, phases, inflight, caps)
            if found is not None:
                yield found
        return
    for ii in _periods(n, p) if longer else (3 * n,):
        wait, budget = (MAX_WAIT, NODE_BUDGET) if ii == 3 * n else (ii - 1, LONG_BUDGET)
        for offsets in offset_candidates(n, ii, phases):
            classes = Classes.of(maps, offsets, ii)
            for shared in _search(classes, p, ii, inflight * ii - 1, wait, budget,
                                  prune=ii == 3 * n):
                found = _finish(maps, ii, offsets, (shared,) * n, phases, inflight, caps)
                if found is not None:
                    yield found
                    break


def _periods(n: int, p: int):
    """3N, 3N + 1, 3N + 2, 3N + 4, .. up to 6N, then doubling (few micro-batches
    per step need long periods to keep two steps out of one micro-batch's flight)."""
    ii, extra = 3 * n, 1
    while ii < 6 * n:
        yield ii
        ii, extra = 3 * n + extra, extra * 2
    while ii <= 48 * n * p:
        yield ii
        ii *= 2


def constructed(maps: Maps, phases: tuple[int, ...]):
    """Closed-form (II, offsets, per-pipeline starts), the least II first.

    Pipeline k of `directions.auto_directions` is the rotation by -2k (mod p);
    it is the rotation by -2k of 2N' ranks (`_rotation_cells`) with ranks
    1 .. 2N' - p taken out. Every pipeline enters at once when steps fall
    between iterations (N divides m); otherwise pipeline k enters at 3k, which
    keeps the tiling when N' is odd (N' = N + 1 for even N: one pipeline idle,
    a bubble of 1/N')."""
    n, p = len(maps), len(maps[0])
    if phases == (0,):
        yield from _rotations(maps, n, (0,) * n)
        mirror = _mirror_cells(p) if p == 2 * n else None
        if mirror is not None:
            yield 3 * n, (0,) * n, (mirror,) * n
    yield from _rotations(maps, n + 1 - n % 2, tuple(3 * k for k in range(n)))


def _rotations(maps: Maps, big: int, offsets: tuple[int, ...]):
    """The rotation cells of N' = `big` over 2N' ranks, cut to `maps` (if they
    are its rotations by -2k with ranks 1 .. 2N' - p taken out)."""
    p, wide = len(maps[0]), 2 * big
    gone = wide - p
    if not 0 <= gone <= 3 or len(maps) > big:
        return
    cells = _rotation_cells(big)
    rows = []
    for k, mp in enumerate(maps):
        shift = (-2 * k) % wide
        if mp != _cut(tuple((s + shift) % wide for s in range(wide)), gone):
            return
        keep = [s for s in range(wide) if not 1 <= (s + shift) % wide <= gone]
        b = {s: cells[2 * wide - 1 - s] for s in range(wide)}
        rows.append(tuple(cells[s] for s in keep) + tuple(b[s] for s in reversed(keep)))
    yield 3 * big, offsets, tuple(rows)


def _cut(mp: tuple[int, ...], gone: int) -> tuple[int, ...]:
    """A map of 2N' ranks with ranks 1 .. gone taken out, ranks renumbered."""
    return tuple(r - gone if r > gone else r for r in mp if not 1 <= r <= gone)


def _rotation_cells(n: int) -> tuple[int, ...]:
    """p = 2N ranks, N rotations by 0, 2, .., 2N - 2: a rank holds the stages
    of one parity. F(2q + e) at 3q + e; B(2q + 1) at 3N - 1 + 6i and B(2q) two
    later, i = N - 1 - q the cell's place from the top (3 more for the lower
    half when N is even). Per parity the forwards take one residue mod 3 and
    the backwards the other two; the cells' lifts q and 2i (+1 for the lower
    half when N is even) are distinct mod N: each parity tiles the period 3N,
    and B(0) starts at 9N - 5 (9N - 2) < 3 periods after F(0)."""
    p = 2 * n
    f = [3 * (s // 2) + s % 2 for s in range(p)]
    b = [0] * p
    for q in range(n):
        i = n - 1 - q
        b[2 * q + 1] = 3 * n - 1 + 6 * i + (3 if n % 2 == 0 and 2 * i >= n else 0)
        b[2 * q] = b[2 * q + 1] + 2
    return tuple(f) + tuple(b[s] for s in reversed(range(p)))


def _mirror_cells(p: int) -> tuple[int, ...] | None:
    """p = 4P, P odd, mirror pairs at shifts 4j: a rank holds the stages = 0, 3
    or = 1, 2 (mod 4). F(4q + i) at 6q + i; B of the top cell at 6P + 1, +2,
    +4, +9, each lower cell 12 later: per class the forwards take two residues
    mod 6 and the backwards the other four, and the cells' lifts q and 2q are
    distinct mod P: each class tiles the period 6P."""
    big = p // 4
    if p % 4 or big % 2 == 0:
        return None
    f = [6 * (s // 4) + s % 4 for s in range(p)]
    b = [6 * big + 1 + (0, 2, 4, 9)[3 - s % 4] + 12 * (big - 1 - s // 4) for s in range(p)]
    return tuple(f) + tuple(b[s] for s in reversed(range(p)))


def offset_candidates(n: int, ii: int, phases: tuple[int, ...]):
    """Entry offsets under which every phase's step has a window: the pipelines
    of the batch that ends finish a stage's backward before those of the next
    batch start it (a step between two pipelines needs them 2 units apart).
    Pipelines between two phases enter together."""
    g = math.gcd(n, *phases) if phases != (0,) else n
    blocks = n // g
    spreads = [0] if blocks == 1 else sorted(
        {d for d in (3 * g, ii // blocks, 2, 3, 4) if d >= 2 and (blocks - 1) * d + 2 <= ii})
    for d in spreads:
        yield tuple((k // g) * d for k in range(n))
    if blocks == 1:  # one batch boundary per iteration: pipelines may also enter apart
        for d in (1, 2, 3):
            if (n - 1) * d + 2 <= ii:
                yield tuple(k * d for k in range(n))


@dataclass(frozen=True)
class Classes:
    """Ranks grouped by the (stage, offset) multiset they host."""

    of_rank: tuple[int, ...]  # class of each rank
    hosts: tuple[tuple[tuple[int, int], ...], ...]  # [stage] -> ((class, offset), ...)
    count: int
    ii: int

    @staticmethod
    def of(maps: Maps, offsets: tuple[int, ...], ii: int) -> Classes:
        p = len(maps[0])
        held: list[list[tuple[int, int]]] = [[] for _ in range(p)]
        for k, mp in enumerate(maps):
            for s, r in enumerate(mp):
                held[r].append((s, offsets[k] % ii))
        keys: dict[tuple[tuple[int, int], ...], int] = {}
        of_rank = tuple(keys.setdefault(tuple(sorted(h)), len(keys)) for h in held)
        first = {c: r for r, c in reversed(list(enumerate(of_rank)))}
        hosts = tuple(tuple((c, o) for c, r in sorted(first.items()) for s2, o in held[r]
                            if s2 == s) for s in range(p))
        return Classes(of_rank, hosts, len(keys), ii)


def mask(t: int, d: int, ii: int) -> int:
    t %= ii
    m = ((1 << d) - 1) << t
    return (m | (m >> ii)) & ((1 << ii) - 1)


def _search(classes: Classes, p: int, ii: int, deadline: int, wait: int, budget: int,
            prune: bool = True):
    """Depth-first over the chain; yields each complete placement found."""
    ops = chain(p)
    tail = [0] * (len(ops) + 1)  # least time from op x's start to B(0)'s start
    for x in reversed(range(len(ops) - 1)):
        tail[x] = tail[x + 1] + ops[x][2]
    full = (1 << ii) - 1
    occ = [0] * classes.count
    b_left = [0] * classes.count
    for s in range(p):
        for c, _ in classes.hosts[s]:
            b_left[c] += 1
    starts = [0] * len(ops)
    left = [budget]

    def windows(m: int) -> int:
        free = ~m & full
        if free == full:
            return ii // 2
        z = (m & -m).bit_length() - 1
        count = run = 0
        for i in range(1, ii + 1):
            if (free >> ((z + i) % ii)) & 1:
                run += 1
            else:
                count += run // 2
                run = 0
        return count + run // 2

    def place(x: int, t: int) -> list[tuple[int, int]] | None:
        _, s, d = ops[x]
        taken: list[tuple[int, int]] = []
        for c, o in classes.hosts[s]:
            mm = mask(o + t, d, ii)
            if occ[c] & mm:
                for c2, m2 in taken:
                    occ[c2] &= ~m2
                return None
            occ[c] |= mm
            taken.append((c, mm))
        return taken

    def dfs(x: int):
        left[0] -= 1
        if left[0] < 0:
            return
        if x == len(ops):
            yield tuple(starts)
            return
        kind, _, _ = ops[x]
        prev = starts[x - 1] + ops[x - 1][2] if x else 0
        for t in range(prev, prev + (wait + 1 if x else 1)):
            if t + tail[x] > deadline:
                break
            taken = place(x, t)
            if taken is None:
                continue
            if kind == "B":
                for c, _ in taken:
                    b_left[c] -= 1
            if kind == "F" or not prune or all(windows(occ[c]) >= b_left[c]
                                                for c in range(classes.count)):
                starts[x] = t
                yield from dfs(x + 1)
            if kind == "B":
                for c, _ in taken:
                    b_left[c] += 1
            for c, mm in taken:
                occ[c] &= ~mm
            if left[0] < 0:
                return

    yield from dfs(0)


def _finish(maps: Maps, ii: int, offsets: tuple[int, ...],
            starts: tuple[tuple[int, ...], ...], phases: tuple[int, ...], inflight: int,
            caps: tuple[int, ...] | None) -> Template | None:
    """The whole template checked: chains in order, stage 0's in-flight
    deadline, no rank running two operations at once, a step instant for every
    phase and stage, the memory caps. None if any fails."""
    p, n = len(maps[0]), len(maps)
    ops = chain(p)
    for row in starts:
        if row[-1] - row[0] > inflight * ii - 1 or any(
                row[x + 1] < row[x] + ops[x][2] for x in range(len(ops) - 1)):
            return None
    occ = [0] * p
    inside: list[set[int]] = [set() for _ in range(p)]  # instants strictly inside a B
    for k, mp in enumerate(maps):
        for x, (_, s, d) in enumerate(ops):
            t = offsets[k] + starts[k][x]
            m = mask(t, d, ii)
            if occ[mp[s]] & m:
                return None
            occ[mp[s]] |= m
            if d == 2:
                inside[mp[s]].add((t + 1) % ii)
    b_at = {s: x for x, (kind, s, _) in enumerate(ops) if kind == "B"}
    steps: list[tuple[tuple[int, ...], ...]] = []
    for phi in range(n):
        if phi not in phases:
            steps.append(())
            continue
        row_steps = []
        for s in range(p):
            ends = [offsets[k] + starts[k][b_at[s]] + (2 if k < phi else 2 - ii)
                    for k in range(n)]  # the old batch's last backward of each replica
            begins = [offsets[k] + starts[k][b_at[s]] + (ii if k < phi else 0)
                      for k in range(n)]  # the new batch's first
            tau = next((t for t in range(max(ends), min(begins) + 1)
                        if all(t % ii not in inside[mp[s]] for mp in maps)), None)
            if tau is None:
                return None
            row_steps.append((tau,) * n)
        steps.append(tuple(row_steps))
    template = Template(ii, offsets, tuple(starts), tuple(steps))
    if caps is not None and any(a > c for a, c in zip(peak_activations(maps, template), caps,
                                                        strict=True)):
        return None
    return template


def peak_activations(maps: Maps, template: Template) -> list[int]:
    """Steady-state peak of forwards without their backward, per rank, counted
    when a forward starts (as the verifier counts)."""
    p, n = len(maps[0]), len(maps)
    ops = chain(p)
    f_at = {s: x for x, (kind, s, _) in enumerate(ops) if kind == "F"}
    b_at = {s: x for x, (kind, s, _) in enumerate(ops) if kind == "B"}
    span = template.latency // template.ii + 2
    far = span + 1
    peaks = [0] * p
    rows = len(template.offsets)  # row k: pipeline k mod N (a whole period's rows)
    for r in range(p):
        held = [(k, s) for k in range(rows) for s in range(p) if maps[k % n][s] == r]
        for k0, s0 in held:
            t = template.time(k0, f_at[s0], far)
            alive = 0
            for k, s in held:
                for it in range(far - span, far + 1):
                    if template.time(k, f_at[s], it) <= t < template.time(k, b_at[s], it) or (
                            (k, s, it) == (k0, s0, far)):
                        alive += 1
            peaks[r] = max(peaks[r], alive)
    return peaks
