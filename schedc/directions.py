"""Stage -> rank maps of a schedule's pipelines ("directions").

A named direction maps every chunk the same way: `down` puts stage i on rank
i mod R, `up` on rank R-1-(i mod R). `v` is V-shaped placement (ZB-V): each
rank holds two chunks, chunk 0 going down the ranks (stage i on rank i) and
chunk 1 coming back up (stage R + i on rank R-1-i), so a rank holds stages i
and 2R-1-i and the first and last stages share rank 0. An explicit map gives the ranks of the
first R stages; later chunks repeat it. `auto` is the multi-directional
(AMDP) choice, made for any p >= 2 by `auto_directions`.
"""

from __future__ import annotations

from collections.abc import Sequence

Map = tuple[int, ...]


def resolve_directions(
    directions: Sequence[str | Sequence[int]] | str, stages: int, ranks: int
) -> tuple[Map, ...]:
    """Full stage -> rank map of each pipeline. Raises ValueError on a bad map."""
    if isinstance(directions, str):
        if directions != "auto":
            directions = (directions,)
        else:
            if stages != ranks:
                raise ValueError("directions auto needs one stage per rank")
            directions = auto_directions(ranks)
    if not directions:
        raise ValueError("at least one direction is needed")
    maps = tuple(_one_map(d, stages, ranks) for d in directions)
    if len(set(maps)) != len(maps):
        raise ValueError("two pipelines have the same stage -> rank map")
    for s in range(stages):
        holders = [m[s] for m in maps]
        if len(set(holders)) != len(holders):
            raise ValueError(f"two pipelines put stage {s} on the same rank; the replicas "
                             "of a stage must be on different ranks")
    return maps


def _one_map(direction: str | Sequence[int], stages: int, ranks: int) -> Map:
    if direction == "v":
        if stages != 2 * ranks:
            raise ValueError(f"direction v places two chunks per rank: stages must be 2 x ranks "
                             f"({2 * ranks}), got {stages}")
        return tuple(s if s < ranks else 2 * ranks - 1 - s for s in range(stages))
    if direction == "down":
        base: Map = tuple(range(ranks))
    elif direction == "up":
        base = tuple(ranks - 1 - r for r in range(ranks))
    elif isinstance(direction, str):
        raise ValueError(f"unknown direction {direction!r}; use down, up, v, auto or "
                         "map(...)")
    else:
        base = tuple(direction)
        if sorted(base) != list(range(ranks)):
            raise ValueError(
                f"map({', '.join(map(str, base))}) must list each rank 0..{ranks - 1} once"
            )
    return tuple(base[s % ranks] for s in range(stages))


def auto_directions(p: int) -> tuple[Map, ...]:
    """N = max(2, ceil(p/2)) pipelines over p ranks (rounded up to even for even
    p), one stage of each per rank.

    Why this rule: each pipeline admits two micro-batches at stage 0, so N
    pipelines keep 2N >= p micro-batches in flight, enough to fill depth p.
    The replicas of every stage must sit on different ranks (they all-reduce),
    so the maps form a Latin rectangle:
    - even p: maps come in pairs, a rotation s -> (s + c) mod p and its mirror
      s -> (p - 1 - s + c) mod p, so within a pair every rank holds stages whose
      depths sum to p - 1: a rank late in one pipeline is early in the other,
      and their bubbles interleave (Chimera's argument). The shifts c are even
      and spread evenly, c_k = 2 * floor(k * (p/2) / pairs): a rotation and a
      mirror meet on a rank only when their shifts differ by an odd number, so
      no stage has two replicas on one rank, and stage 0 of every pipeline is
      on a different rank (rotations on even ranks, mirrors on odd ones).
    - odd p: a rotation and a mirror always share a rank for some stage (2 is
      invertible mod p), so the maps are rotations by c_k = floor(k * p / N).
    Pipelines are ordered by the rank of their stage 0. For p = 4 and p = 8
    this is exactly the AMDP reference's choice.
    """
    if p < 2:
        raise ValueError("multi-directional schedules need at least 2 ranks")
    n = max(2, -(-p // 2))
    maps: list[Map] = []
    if p % 2 == 0:
        n += n % 2  # whole pairs only: an unpaired rotation unbalances the ranks
        pairs = -(-n // 2)
        for k in range(pairs):
            shift = 2 * (k * (p // 2) // pairs)
            maps.append(tuple((s + shift) % p for s in range(p)))
            maps.append(tuple((p - 1 - s + shift) % p for s in range(p)))
        maps = maps[:n]
    else:
        maps = [tuple((s + k * p // n) % p for s in range(p)) for k in range(n)]
    maps.sort(key=lambda m: m[0])
    return tuple(maps)
