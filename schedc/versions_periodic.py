"""Where the version check repeats itself a body later (schedc.versions).

Runs of 1, 2, 3 ... bodies agree up to their epilogues, and a rank's check
reads nothing but its own stream. Stopped before run n's epilogue, a rank's
check (its *line*) stands in a state; what the rest of the run reads of it is
`line_state`, shifted back to the run of one body. Where the states before
the epilogues of runs n - 1 and n are equal so (`shifted`), on every rank:

- run n's epilogue checks as run n - 1's did, a body later;
- run n + 1 from there (its last body and its epilogue) checks as run n did
  from the stop before, a body later.

So run n's table and run n + 1's follow from run n - 1's and the lines' own
(`next_table`), with no instruction checked again. The state covers the
micro-batches any of those reads (`window`), and only programs whose every
rule shifts with the period compare at all (`comparable`).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from operator import sub
from typing import TYPE_CHECKING

from schedc.program import Instr, Manifest, Period, RankProgram
from schedc.spec import Spec
from schedc.unroll import Unrolled
from schedc.version_table import ABSENT, FIELDS, TYPECODE, Columns, VersionTable

if TYPE_CHECKING:
    from schedc.versions import _RankReplay

# A line's state before a run's epilogue (line_state): what it reads in plain
# values, shifted back to the run of one body; the table's entries for the
# window's micro-batches, as they stand, with each column's shift per body.
LineState = tuple[tuple, list[tuple[array, int]]]

_PEAKS = ("inflight_peaks", "copy_peaks", "version_peaks")


def comparable(manifest: Manifest, spec: Spec) -> bool:
    """Every rule the check applies is the same a period later: a step's
    micro-batches (ACC, STEP) and a pipeline's (the all-reduce's batch) shift
    with it, and so does a sparse synchronisation's version."""
    period = manifest.period
    return (period.steps > 0 and period.microbatches % period.steps == 0
            and period.microbatches % manifest.num_pipelines == 0
            and (spec.dp_mode != "async-sparse" or period.steps % spec.dp_period == 0))


def _mb_range(seq: Sequence[Instr], shift: int = 0) -> tuple[int, int] | None:
    """(least, one past the greatest) micro-batch of `seq`, shifted; None: none."""
    mbs = [ins.mb for ins in seq if ins.mb is not None]
    return (min(mbs) + shift, max(mbs) + 1 + shift) if mbs else None


def window(prog: RankProgram, period: Period) -> tuple[int, int]:
    """The micro-batches (lo, hi) a rank's check reads after run 1's last body,
    in run 1's numbering: run 1's epilogue, and run 2's last body and
    epilogue. (0, 0): none."""
    m = period.microbatches
    ranges = [r for r in (_mb_range(prog.epilogue), _mb_range(prog.body, m),
                          _mb_range(prog.epilogue, m)) if r is not None]
    if not ranges:
        return 0, 0
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def line_state(line: _RankReplay, un: Unrolled, window: tuple[int, int]) -> LineState:
    """What the rest of run `un` after its last body reads of rank line's
    check, and of run un + 1 after the same place: each replica's weights,
    gradients, peaks and what ran for the micro-batches in `window` (run 1's
    numbering), what was received and not used, what is alive; and the
    table's entries for those micro-batches."""
    prog, period = un.programs[line.rank], un.period
    back = un.repeats - 1
    dm, dv = back * period.microbatches, back * period.steps
    lo, hi = (window[0] + dm, window[1] + dm) if window[1] else (0, 0)
    plain: list = [line.unused, line.alive, line.alive_peak[0]]
    columns: list[tuple[array, int]] = []
    table = line.table
    for key, rep in sorted(line.replicas.items()):
        plain += [key, rep.current - dv, sorted(v - dv for v in rep.stash),
                  None if rep.lookahead is None else rep.lookahead - dv,
                  None if rep.active is None else (rep.active[0] - dv, rep.active[1]),
                  sorted(mb - dm for mb in rep.accumulated), rep.reduced, rep.inflight,
                  rep.inflight_peak,
                  sorted((op, bytes(marks[lo:hi]).ljust(hi - lo, b"\0"))
                         for op, marks in rep.ran.items()),
                  [getattr(table, name).get(key, (0,))[0] for name in _PEAKS]]
        cols = table.columns.get(key)
        if cols is None:
            plain.append(None)
            continue
        i0, i1 = (-(-(bound - cols.phase) // cols.stride) for bound in (lo, hi))
        plain.append((cols.stride, cols.phase, (lo - cols.phase) % cols.stride))
        for name, shift in _shifts(period, len(prog.body)):
            held = getattr(cols, name)[max(i0, 0):i1]
            columns.append((held + array(TYPECODE, [ABSENT]) * (i1 - max(i0, 0) - len(held)),
                            shift))
    return tuple(map(_frozen, plain)), columns


def _shifts(period: Period, body: int) -> list[tuple[str, int]]:
    """Each table column (version_table.FIELDS) with what it moves by a body
    later: the versions by the period's steps, `where` by the body's length."""
    return [(name, body if name == "where" else period.steps) for name in FIELDS]


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def shifted(before: LineState, after: LineState) -> bool:
    """`after` is `before` a body later: the same plain values, and each
    table entry one column's shift later where `before` has one (ABSENT where
    it has none)."""
    if before[0] != after[0] or len(before[1]) != len(after[1]):
        return False
    for (a, shift), (b, _) in zip(before[1], after[1], strict=True):
        absent = a.count(ABSENT)
        if len(a) != len(b) or absent != b.count(ABSENT):
            return False
        steps = Counter(map(sub, b, a))
        if set(steps) - {0, shift} or steps[0] != absent:
            return False
    return True


def next_table(prev: VersionTable, lines: Sequence[VersionTable],
               windows: Sequence[tuple[int, int]], epilogues: Sequence[int],
               bodies: Sequence[int], period: Period,
               syncs: dict[tuple[int, int], int]) -> VersionTable | None:
    """The table of the run a body longer than `prev`'s, whose lines
    (`lines`: each rank's table as its line stands) stand a body after where
    they stood in `prev`'s run, in the same state shifted (`shifted`):

    - an entry in the rank's window (`windows`: absolute micro-batches; it
      holds every micro-batch the runs write after the lines' stop) is
      `prev`'s a period earlier, shifted: versions by the period's steps,
      where by the rank's body (`bodies`);
    - any other entry is the line's, as nothing later writes it;
    - a peak first reached in `prev`'s epilogue (at or after `epilogues`, per
      rank) is reached a body later, any other where it was;
    - each replica syncs `syncs` more times.

    None where a replica's slots do not line up a period apart."""
    table = VersionTable()
    mine: list[dict] = [{} for _ in lines]
    for key, cols in prev.columns.items():
        mine[cols.rank][key] = cols
    for r, line in enumerate(lines):
        for key in line.columns.keys() | mine[r].keys():
            cols = _shifted_columns(line.columns.get(key), mine[r].get(key), r, windows[r],
                                    bodies[r], period)
            if cols is None:
                return None
            table.columns[key] = cols
        for name in _PEAKS:
            getattr(table, name).update(getattr(line, name))
    for name in _PEAKS:
        peaks = getattr(table, name)
        for key, (value, (rank, idx)) in getattr(prev, name).items():
            peaks[key] = (value, (rank, idx + bodies[rank] if idx >= epilogues[rank] else idx))
    table.activation_peaks = [
        (value, idx + bodies[r] if idx >= epilogues[r] else idx)
        for r, (value, idx) in enumerate(prev.activation_peaks)]
    for key in prev.sparse_syncs.keys() | syncs.keys():
        count = prev.sparse_syncs.get(key, 0) + syncs.get(key, 0)
        if count:
            table.sparse_syncs[key] = count
    return table


def _shifted_columns(line: Columns | None, prev: Columns | None, rank: int,
                     window: tuple[int, int], body: int, period: Period) -> Columns | None:
    """One replica's columns for next_table: the line's, with the window's
    slots taken from `prev`'s a period earlier, shifted."""
    ref = line or prev
    stride, phase = ref.stride, ref.phase
    if (line and prev and (prev.stride, prev.phase) != (stride, phase)) or \
            period.microbatches % stride:
        return None
    new = line.copy() if line is not None else Columns(rank, stride, phase)
    i0, i1 = (max(-(-(bound - phase) // stride), 0) for bound in window)
    if i1 <= i0:
        return new
    new.room(i1 - 1)
    back = period.microbatches // stride
    j0, j1 = i0 - back, i1 - back
    for name, shift in _shifts(period, body):
        src = getattr(prev, name) if prev is not None else array(TYPECODE)
        held = [v if v == ABSENT else v + shift for v in src[max(j0, 0):max(j1, 0)]]
        pad = [ABSENT] * (max(0, -j0) - max(0, -j1))
        tail = [ABSENT] * (i1 - i0 - len(pad) - len(held))
        getattr(new, name)[i0:i1] = array(TYPECODE, pad + held + tail)
    return new
