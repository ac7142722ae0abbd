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
    """N = max(2, ceil(p/2)) pipelines over p ranks, one stage of each per rank.

    Why this rule: each pipeline admits two micro-batches at stage 0, so N
    pipelines keep 2N >= p micro-batches in flight, enough to fill depth p.
    The replicas of every stage must sit on different ranks (they all-reduce),
    so the maps form a Latin rectangle. The maps are chosen so that AMDP's
    modulo schedule (schedc.modulo) has a closed form without bubble:
    - p = 2, 4, 8: the AMDP reference's maps (p = 4, 8), mirror pairs: a rotation
      s -> (s + c) mod p and its mirror s -> (p - 1 - s + c) mod p, shifts
      c = 0 and p/2 (p = 8: r, (11 - r) mod 8, (r + 4) mod 8, 7 - r);
    - p = 3: rotations by 0 and 1;
    - any other p: pipeline k is the rotation s -> (s - 2k) mod p. For even p
      a rank then holds the stages of one parity; for odd p the maps are those
      of p + 1 ranks with rank 1 taken out. This order (rather than s + 2k)
      lets pipeline k enter 3k units after pipeline 0 without breaking the
      tiling when N is odd, so steps may fall between pipelines (m not a
      multiple of N).
    Mirror pairs are ordered by the rank of their stage 0.
    """
    if p < 2:
        raise ValueError("multi-directional schedules need at least 2 ranks")
    n = max(2, -(-p // 2))
    maps: list[Map]
    if p in (2, 4, 8):
        maps = []
        for shift in range(0, p, max(4, p // 2)) if p > 2 else (0,):
            maps.append(tuple((s + shift) % p for s in range(p)))
            maps.append(tuple((p - 1 - s + shift) % p for s in range(p)))
        maps.sort(key=lambda m: m[0])
    elif p == 3:
        maps = [(0, 1, 2), (1, 2, 0)]
    else:  # pipeline k: the rotation by -2k
        maps = [tuple((s - 2 * k) % p for s in range(p)) for k in range(n)]
    return tuple(maps)
