"""B, I and W a profile does not give, derived per stage of the candidate.

A run measures the ops its schedule has (a 1F1B run times F and B, no I or W);
tune prices the others by these rules, applied to each candidate's own stages
after the depth resampling (so only the candidate's stage 0 is the first):

| missing | given | derived |
|---|---|---|
| B | I and W | B = I + W |
| B | F | B = 2 F (the unit costs' ratio) |
| I or W | B and the other | the rest of B |
| I and W | B | I = 0.5 B, W = B - I; at stage 0 I = 0 and W = B |

Stage 0 has no input gradient: the runtime's I there computes nothing and its
W is the whole backward (runtime/interpreter.py `_op_I`); elsewhere B is
halved, the compiler's unit costs (I = W = 1, B = 2). These are the rules the
simulator applies itself once it derives missing op times (docs/costs.md);
then this module goes, and no figure changes.
"""

from __future__ import annotations

SPLIT_I = 0.5  # I / B at stages > 0
B_PER_F = 2.0


def derive_split(times: dict[str, float], stage: int) -> list[str]:
    """Fill in `times`' missing B, I and W (in place); the rules used."""
    rules = []
    if "B" not in times:
        if "I" in times and "W" in times:
            times["B"] = times["I"] + times["W"]
            rules.append("B = I + W")
        elif "F" in times:
            times["B"] = B_PER_F * times["F"]
            rules.append(f"B = {B_PER_F:g} * F")
        else:
            return rules
    b = times["B"]
    i, w = times.get("I"), times.get("W")
    if i is None and w is None:
        if stage == 0:
            times["I"], times["W"] = 0.0, b
            rules.append("I = 0, W = B (no input gradient)")
        else:
            times["I"] = SPLIT_I * b
            times["W"] = b - times["I"]
            rules.append(f"I = {SPLIT_I:g} * B, W = B - I")
    elif i is None:
        times["I"] = max(b - w, 0.0)
        rules.append("I = B - W")
    elif w is None:
        times["W"] = max(b - i, 0.0)
        rules.append("W = B - I")
    return rules


def explain(per_stage: list[list[str]]) -> list[str]:
    """One note per rule: `I = 0.5 * B, W = B - I at stages 1, 2, 3 (not measured)`."""
    where: dict[str, list[int]] = {}
    for s, rules in enumerate(per_stage):
        for rule in rules:
            where.setdefault(rule, []).append(s)
    return [f"{rule} at stage{'s' if len(st) > 1 else ''} {', '.join(map(str, st))} "
            "(not measured)" for rule, st in where.items()]
