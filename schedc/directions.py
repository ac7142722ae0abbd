"""Stage -> rank maps of a schedule's pipelines ("directions").

A named direction maps every chunk the same way: `down` puts stage i on rank
i mod R, `up` on rank R-1-(i mod R). An explicit map gives the ranks of the
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
            return auto_directions(ranks)
    if not directions:
        raise ValueError("at least one direction is needed")
    maps = tuple(_one_map(d, stages, ranks) for d in directions)
    if len(set(maps)) != len(maps):
        raise ValueError("two pipelines have the same stage -> rank map")
    return maps


def _one_map(direction: str | Sequence[int], stages: int, ranks: int) -> Map:
    if direction == "down":
        base: Map = tuple(range(ranks))
    elif direction == "up":
        base = tuple(ranks - 1 - r for r in range(ranks))
    elif isinstance(direction, str):
        raise ValueError(f"unknown direction {direction!r}; use down, up, auto or map(...)")
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
    Maps come in pairs, a rotation s -> (s + shift) mod p and its mirror
    s -> (p - 1 - s + shift) mod p, so within a pair every rank holds stages
    whose depths sum to p - 1: a rank that is late in one pipeline is early in
    the other, and their bubbles interleave (Chimera's argument). Shifts are
    spread evenly, k * floor(p / pairs), which puts stage 0 of every pipeline
    on a different rank. Pipelines are ordered by the rank of their stage 0.
    For p = 4 and p = 8 this is exactly the AMDP reference's choice.
    """
    if p < 2:
        raise ValueError("multi-directional schedules need at least 2 ranks")
    n = max(2, -(-p // 2))
    pairs = -(-n // 2)
    step = p // pairs
    maps: list[Map] = []
    for k in range(pairs):
        shift = k * step
        maps.append(tuple((s + shift) % p for s in range(p)))
        if len(maps) < n:
            maps.append(tuple((p - 1 - s + shift) % p for s in range(p)))
    maps = maps[:n]
    maps.sort(key=lambda m: m[0])
    if len({m[0] for m in maps}) != n:  # pragma: no cover - proven in the docstring
        raise AssertionError(f"auto directions for p={p} put two stage 0s on one rank")
    return tuple(maps)
