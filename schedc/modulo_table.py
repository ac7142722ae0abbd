"""AMDP's whole-period templates where N does not divide m, found offline.

Where N does not divide m no template of one iteration lets every batch
boundary fall between pipelines for most shapes (schedc.modulo then gives each
batch whole iterations, idling the pipelines without one more micro-batch).
Over the whole period of lcm(N, m) micro-batches (N / gcd(N, m) steps) only
the real batch boundaries need a step window, so a period with fewer idle
units exists; a CP-SAT solver finds it (`scripts/amdp_templates.py`, which
also states the model). An entry is the period P, each of the period's
micro-batches' chain start times (F(0..p-1), B(p-1..0); micro-batch u of the
period runs on pipeline u mod N) and each step's instant per stage. Each entry
is checked here when used (chains in order, no rank running two operations at
once, each step after its batch's last backward of the stage and before the
next batch's first, at an instant no replica rank is inside a backward, three
forwards alive at most at stage 0 of a pipeline); the
versions by schedc.modulo and the programs by the verifier, as every compile.
"""

from __future__ import annotations

import math

from schedc.directions import auto_directions
from schedc.modulo_search import Maps, Template, chain, mask, peak_activations

# (p, m) -> (period, starts[u][x] (absolute, micro-batch u of the period),
# steps[j][stage] (the step that ends the period's batch j))
TABLE: dict[tuple[int, int], tuple[int, tuple[tuple[int, ...], ...],
                                   tuple[tuple[int, ...], ...]]] = {
    (3, 3): (19,
         ((0, 1, 2, 3, 5, 7), (0, 1, 4, 5, 8, 11), (1, 4, 5, 6, 8, 10), (7, 10, 12, 13, 15, 17),
          (9, 10, 11, 12, 14, 21), (13, 14, 15, 16, 18, 21)),
         ((13, 10, 10), (23, 20, 18))),
    (3, 5): (31,
         ((0, 1, 2, 3, 5, 7), (0, 1, 4, 5, 8, 11), (1, 2, 5, 6, 8, 10), (7, 10, 12, 13, 15, 17),
          (9, 10, 11, 12, 14, 19), (13, 14, 16, 17, 20, 23), (15, 16, 17, 18, 20, 22),
          (19, 22, 24, 25, 27, 29), (21, 22, 23, 24, 26, 33), (25, 26, 27, 28, 30, 34)),
         ((22, 17, 15), (36, 32, 30))),
    (3, 7): (43,
         ((0, 1, 2, 3, 5, 7), (0, 1, 4, 5, 8, 11), (1, 2, 5, 6, 8, 10), (7, 10, 12, 13, 15, 17),
          (9, 10, 11, 12, 14, 16), (13, 14, 18, 19, 21, 23), (15, 16, 17, 18, 20, 22),
          (19, 20, 24, 25, 27, 29), (21, 22, 23, 24, 26, 28), (25, 26, 30, 31, 33, 35),
          (27, 28, 29, 30, 32, 34), (31, 32, 36, 37, 39, 41), (33, 34, 35, 36, 38, 45),
          (37, 38, 39, 40, 42, 46)),
         ((25, 23, 21), (48, 44, 42))),
    (4, 3): (21,
         ((0, 1, 5, 6, 7, 10, 12, 14), (1, 4, 6, 7, 8, 10, 12, 15),
          (6, 7, 8, 11, 13, 15, 17, 19), (12, 14, 15, 16, 17, 20, 23, 25),
          (12, 14, 17, 18, 19, 21, 23, 25), (17, 18, 19, 22, 23, 25, 27, 30)),
         ((21, 19, 20, 17), (33, 29, 27, 28))),
    (4, 5): (32,
         ((0, 1, 2, 3, 4, 7, 9, 11), (0, 1, 2, 3, 4, 13, 15, 17), (6, 7, 9, 10, 11, 13, 15, 17),
          (6, 10, 12, 13, 14, 19, 21, 23), (9, 11, 12, 13, 14, 19, 21, 23),
          (16, 17, 18, 19, 20, 23, 25, 27), (16, 17, 18, 19, 20, 29, 31, 33),
          (22, 23, 25, 26, 27, 29, 31, 33), (22, 26, 28, 29, 30, 35, 37, 39),
          (25, 27, 28, 29, 30, 35, 37, 39)),
         ((27, 23, 21, 20), (41, 39, 37, 32))),
    (4, 7): (45,
         ((0, 1, 2, 3, 4, 6, 8, 10), (0, 1, 4, 5, 6, 12, 14, 16), (4, 6, 8, 9, 10, 12, 14, 16),
          (8, 9, 11, 12, 13, 18, 20, 22), (9, 10, 11, 12, 13, 18, 20, 22),
          (15, 16, 17, 18, 19, 24, 26, 28), (15, 16, 17, 18, 19, 24, 26, 28),
          (21, 22, 23, 24, 25, 30, 32, 34), (21, 22, 23, 24, 25, 30, 32, 35),
          (27, 28, 29, 30, 31, 36, 38, 40), (27, 28, 29, 30, 31, 36, 38, 40),
          (33, 34, 35, 37, 38, 42, 44, 46), (33, 34, 35, 36, 37, 41, 44, 46),
          (39, 40, 41, 42, 43, 47, 49, 51)),
         ((34, 28, 26, 21), (53, 53, 49, 49))),
    (4, 9): (57,
         ((0, 1, 2, 3, 4, 9, 11, 13), (0, 1, 2, 3, 4, 9, 11, 13), (6, 7, 8, 9, 10, 13, 15, 17),
          (6, 7, 8, 9, 10, 13, 15, 17), (12, 17, 18, 19, 20, 22, 24, 26),
          (15, 19, 20, 22, 23, 27, 29, 32), (15, 19, 20, 22, 23, 26, 29, 31),
          (16, 17, 18, 19, 20, 22, 24, 26), (25, 26, 28, 29, 30, 32, 34, 36),
          (25, 31, 32, 33, 34, 36, 38, 40), (28, 31, 34, 35, 36, 42, 44, 46),
          (34, 35, 38, 39, 40, 42, 44, 46), (38, 39, 41, 42, 43, 48, 50, 52),
          (38, 40, 41, 42, 43, 48, 50, 52), (45, 46, 47, 48, 49, 54, 56, 58),
          (45, 46, 47, 48, 49, 54, 56, 58), (51, 52, 53, 54, 55, 60, 62, 64),
          (51, 52, 53, 54, 55, 60, 62, 64)),
         ((38, 36, 34, 34), (66, 64, 62, 57))),
    (5, 5): (49,
         ((0, 4, 7, 10, 11, 12, 14, 16, 18, 20), (0, 1, 2, 3, 4, 5, 8, 10, 15, 17),
          (1, 2, 3, 4, 6, 7, 9, 11, 18, 21), (1, 2, 3, 4, 5, 6, 8, 10, 12, 23),
          (7, 8, 9, 10, 12, 13, 15, 18, 22, 25), (7, 8, 13, 14, 15, 16, 20, 22, 24, 27),
          (12, 14, 15, 16, 17, 18, 20, 22, 24, 30), (19, 24, 25, 26, 27, 28, 31, 33, 35, 37),
          (20, 21, 24, 25, 26, 27, 29, 31, 33, 35), (22, 23, 26, 28, 31, 32, 34, 36, 38, 40),
          (27, 28, 29, 30, 31, 39, 41, 45, 47, 50), (29, 30, 33, 34, 35, 36, 38, 41, 44, 46),
          (32, 33, 35, 39, 40, 42, 44, 46, 48, 52), (36, 37, 38, 40, 41, 42, 44, 47, 51, 54),
          (37, 38, 40, 41, 42, 43, 45, 47, 49, 54)),
         ((27, 24, 20, 17, 15), (43, 44, 39, 37, 35), (56, 53, 59, 57, 49))),
    (5, 7): (66,
         ((0, 1, 2, 7, 8, 9, 11, 15, 17, 19), (0, 1, 2, 3, 4, 5, 7, 9, 11, 13),
          (0, 1, 2, 3, 8, 11, 14, 16, 18, 20), (1, 2, 3, 4, 5, 6, 8, 10, 12, 26),
          (3, 4, 5, 9, 12, 13, 15, 17, 23, 26), (6, 7, 10, 13, 14, 15, 17, 19, 21, 23),
          (13, 14, 17, 18, 19, 20, 22, 24, 26, 29), (15, 16, 22, 25, 26, 27, 29, 31, 33, 36),
          (19, 20, 21, 22, 23, 24, 26, 28, 30, 32), (21, 22, 23, 25, 28, 29, 31, 33, 36, 38),
          (24, 25, 33, 34, 35, 37, 39, 41, 43, 45), (28, 29, 30, 31, 34, 35, 37, 39, 43, 45),
          (28, 31, 32, 34, 36, 39, 42, 46, 48, 53), (33, 35, 37, 38, 39, 40, 42, 47, 49, 51),
          (35, 36, 38, 41, 43, 45, 51, 53, 55, 58), (40, 41, 42, 44, 45, 46, 48, 52, 54, 64),
          (41, 42, 44, 47, 48, 49, 51, 60, 62, 64), (44, 45, 47, 48, 50, 51, 54, 57, 60, 62),
          (49, 50, 51, 56, 57, 58, 60, 62, 64, 72), (50, 53, 55, 56, 57, 58, 60, 62, 65, 71),
          (53, 54, 55, 56, 57, 58, 60, 62, 64, 70)),
         ((31, 29, 26, 25, 23), (57, 51, 51, 45, 45), (77, 67, 64, 62, 60))),
    (5, 8): (76,
         ((0, 1, 2, 3, 4, 5, 7, 9, 11, 13), (0, 1, 2, 3, 4, 5, 7, 9, 11, 13),
          (0, 1, 2, 3, 5, 6, 8, 10, 15, 17), (1, 2, 3, 9, 10, 13, 17, 19, 21, 28),
          (4, 7, 8, 9, 11, 12, 14, 16, 18, 20), (6, 7, 12, 15, 18, 20, 24, 26, 28, 30),
          (11, 13, 14, 15, 16, 20, 23, 25, 28, 32), (16, 17, 19, 20, 21, 22, 24, 26, 28, 30),
          (16, 17, 19, 22, 23, 24, 26, 28, 30, 34), (22, 23, 24, 25, 30, 31, 36, 38, 40, 44),
          (22, 23, 31, 33, 34, 35, 37, 39, 41, 45), (26, 27, 32, 33, 34, 35, 38, 42, 44, 46),
          (30, 32, 33, 34, 35, 36, 39, 47, 49, 53), (33, 34, 37, 39, 40, 41, 43, 47, 50, 58),
          (36, 37, 38, 40, 41, 42, 44, 52, 56, 58), (38, 42, 43, 44, 46, 47, 49, 53, 55, 62),
          (41, 43, 46, 48, 49, 50, 52, 56, 59, 67), (45, 46, 47, 49, 50, 51, 53, 55, 62, 64),
          (49, 51, 52, 54, 55, 56, 61, 65, 67, 74), (51, 52, 55, 57, 58, 59, 61, 65, 68, 71),
          (54, 55, 57, 58, 59, 60, 62, 64, 70, 72), (58, 60, 61, 63, 64, 65, 69, 72, 74, 79),
          (60, 61, 64, 66, 67, 68, 70, 72, 74, 81), (63, 64, 66, 67, 68, 69, 71, 73, 75, 80)),
         ((34, 30, 28, 26, 24), (64, 58, 55, 52, 50), (85, 77, 77, 76, 74))),
    (6, 5): (50,
         ((0, 1, 2, 3, 10, 12, 13, 16, 18, 20, 22, 24),
          (0, 1, 6, 7, 8, 9, 10, 12, 14, 16, 18, 22), (0, 2, 3, 5, 7, 8, 9, 13, 15, 19, 21, 24),
          (3, 4, 5, 6, 7, 8, 9, 11, 13, 15, 17, 19),
          (4, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 26),
          (11, 12, 18, 20, 21, 24, 25, 27, 29, 32, 34, 36),
          (15, 16, 17, 20, 21, 22, 26, 28, 31, 33, 35, 39),
          (15, 17, 18, 19, 22, 23, 25, 27, 29, 33, 36, 38),
          (23, 24, 25, 28, 29, 31, 33, 36, 38, 41, 43, 45),
          (26, 27, 29, 30, 31, 32, 33, 35, 37, 39, 46, 48),
          (30, 31, 35, 37, 38, 39, 40, 42, 44, 46, 48, 51),
          (30, 33, 34, 35, 38, 39, 40, 43, 45, 48, 50, 56),
          (31, 32, 35, 36, 37, 40, 42, 45, 48, 53, 55, 58),
          (40, 41, 42, 43, 44, 45, 46, 48, 52, 54, 56, 58),
          (41, 42, 43, 44, 45, 48, 49, 51, 53, 55, 57, 59)),
         ((30, 28, 24, 29, 26, 20), (50, 48, 45, 42, 41, 40), (61, 59, 65, 63, 61, 52))),
}


def tabled(maps: Maps, m: int, inflight: int, caps: tuple[int, ...] | None) -> list[Template]:
    """The table's template for these maps and m, if any and if it holds
    (within the reference's peak activations `caps`, where given)."""
    p, n = len(maps[0]), len(maps)
    entry = TABLE.get((p, m))
    if entry is None or maps != auto_directions(p) or inflight < 3:
        return []
    period, times, taus = entry
    template = Template(period, tuple(row[0] for row in times),
                        tuple(tuple(t - row[0] for t in row) for row in times),
                        tuple(tuple((tau,) * n for tau in row) for row in taus))
    if not _holds(maps, m, period, times, taus) or caps is not None and any(
            a > c for a, c in zip(peak_activations(maps, template), caps, strict=True)):
        return []
    return [template]


def _holds(maps: Maps, m: int, period: int, times, taus) -> bool:
    p, n = len(maps[0]), len(maps)
    ops = chain(p)
    rows = math.lcm(n, m)
    if len(times) != rows or len(taus) != rows // m:
        return False
    occ = [0] * p
    inside: list[set[int]] = [set() for _ in range(p)]
    for u, row in enumerate(times):
        for x, (_, s, d) in enumerate(ops):
            if x + 1 < len(ops) and row[x + 1] < row[x] + d:
                return False
            r, bits = maps[u % n][s], mask(row[x], d, period)
            if occ[r] & bits:
                return False
            occ[r] |= bits
            if d == 2:
                inside[r].add((row[x] + 1) % period)
    def at(u: int, x: int) -> int:  # micro-batch u of any period (u < 0: earlier ones)
        return times[u % rows][x] + period * (u // rows)

    if any(at(u - 3 * n, len(ops) - 1) + 2 > at(u, 0) for u in range(rows)):
        return False  # more than three forwards alive at stage 0 of a pipeline
    for j, row in enumerate(taus):
        end = (j + 1) * m
        for s, tau in enumerate(row):
            b = 2 * p - 1 - s
            back = [at(u, b) for u in range(end - rows, end)]
            ahead = [at(u, b) for u in range(end, end + rows)]
            if not max(back) + 2 <= tau <= min(ahead) or any(
                    tau % period in inside[mp[s]] for mp in maps):
                return False
    return True
