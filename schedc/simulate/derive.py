"""Op times a profile does not give, derived from the ones it does (never 0).

A run measures the ops its schedule has: a 1F1B run times F and B but no I or
W, a ZB-H1 run I and W but no B. A profile used to predict another schedule
prices the missing ops by these rules, per stage, in this order
(docs/costs.md, "Derived op times"):

| missing | given | derived |
|---|---|---|
| B | I and W | B = I + W (the runtime's split runs exactly B's work) |
| I or W | B and the other half | the rest of B: I = B - W, W = B - I |
| I, W | B | the default split: I = SPLIT_I * B, W = B - I; at stage 0, I = 0 and W = B |
| B | F | B = 2 F (the unit costs' ratio) |
| I, W | F only | from B = 2 F by the rules above |

Stage 0 has no input gradient, so the runtime's I there computes nothing and
its W is the whole backward (runtime/interpreter.py `_op_I`); at every other
stage the default halves B, the compiler's unit costs (I = W = 1, B = 2). A
measured profile (`--costs-out`) gives I and W from the runtime's own split
(every second B of the run timed as I then W), so these defaults only price
older or hand-written profiles.
"""

from __future__ import annotations

from schedc.instructions import UNIT_COSTS

SPLIT_I = UNIT_COSTS["I"] / UNIT_COSTS["B"]  # I / B by default at stages > 0 (0.5)
B_PER_F = UNIT_COSTS["B"] / UNIT_COSTS["F"]  # B / F by default (2)
DERIVABLE = ("B", "I", "W")


def derive(op: str, times: dict[str, float], stage: int) -> tuple[float, str] | None:
    """(time, rule) of `op` at `stage` from the stage's given `times`; None when
    nothing it depends on is given (or `op` is not derivable)."""
    if op not in DERIVABLE:
        return None
    if op == "B":
        if "I" in times and "W" in times:
            return times["I"] + times["W"], "B = I + W"
        if "F" in times:
            return B_PER_F * times["F"], f"B = {B_PER_F:g} * F (default)"
        return None
    other = "W" if op == "I" else "I"
    if "B" in times:
        b, how = times["B"], "B"
    else:
        got = derive("B", times, stage)
        if got is None:
            return None
        b, how = got[0], f"B ({got[1]})"
    if other in times:
        return max(b - times[other], 0.0), f"{op} = {how} - {other}"
    if stage == 0:  # no input gradient: I is empty, W is the whole backward
        return (0.0, "I = 0 (no input gradient)") if op == "I" else \
            (b, f"W = {how} (no input gradient)")
    share = SPLIT_I if op == "I" else 1.0 - SPLIT_I
    return share * b, f"{op} = {share:g} * {how} (default split)"


def explain(derivations: dict[str, list[str | None]]) -> list[str]:
    """One line per rule of `CostModel.derivations`: `I = 0.5 * B (default
    split) at stages 1, 2, 3`."""
    lines = []
    for rules in derivations.values():
        stages: dict[str, list[int]] = {}
        for s, rule in enumerate(rules):
            if rule is not None:
                stages.setdefault(rule, []).append(s)
        for rule, where in stages.items():
            which = "stage" if len(where) == 1 else "stages"
            lines.append(f"{rule} at {which} {', '.join(map(str, where))}")
    return lines
