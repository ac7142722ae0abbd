"""Hand-made compute orders (no compiler needed): GPipe, 1F1B, interleaved."""

from __future__ import annotations


def gpipe(p: int, m: int) -> list[list[tuple[int, str, int]]]:
    return [[(r, "F", j) for j in range(m)] + [(r, "B", j) for j in range(m)] for r in range(p)]


def one_f_one_b(p: int, m: int) -> list[list[tuple[int, str, int]]]:
    orders = []
    for r in range(p):
        warm = min(p - 1 - r, m)
        order = [(r, "F", j) for j in range(warm)]
        f, b = warm, 0
        while b < m:
            if f < m:
                order.append((r, "F", f))
                f += 1
            order.append((r, "B", b))
            b += 1
        orders.append(order)
    return orders


def zb_h1_like(p: int, m: int) -> list[list[tuple[int, str, int]]]:
    """1F1B with each B split into I then W right after (not zero-bubble, just split)."""
    return [[a for s, op, j in order for a in
             ([(s, "I", j), (s, "W", j)] if op == "B" else [(s, op, j)])]
            for order in one_f_one_b(p, m)]
