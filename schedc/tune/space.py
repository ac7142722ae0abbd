"""The search space of `schedc tune`: which candidates exist for R ranks and a
global batch, and the Spec each one compiles.

A candidate is a preset (family) with micro-batches m per step (micro-batch
size = batch / m, the global batch fixed), and, where the family has them:
chunks per rank v (interleaved-1f1b; zbv's V holds exactly 2), the pipelines'
directions (amdp: `auto`, p/2 pipelines, or `down,up`), look-ahead (the
asynchronous families) and the I/W split of the backward (families whose order
does not split already). `KNOBS` is that table; `enumerate_space` the product,
in a fixed order. Whether a combination is a valid schedule is the compiler's
to say: a refused candidate stays in the table with the compiler's reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schedc.presets import PRESETS, preset_spec
from schedc.spec import Spec

SYNCHRONOUS = ("gpipe", "1f1b", "interleaved-1f1b", "zb-h1", "zbv", "chimera")
ASYNCHRONOUS = ("pipedream", "pipedream-2bw", "paci", "amdp")


@dataclass(frozen=True)
class Knobs:
    """What a family lets the tuner vary besides m."""

    chunks: str = "one"  # "one": 1 per rank; "choice": --chunks values; "v": exactly 2 (V)
    directions: tuple[str, ...] = ("",)  # "" = the preset's own; "down,up" = two
    lookahead: bool = False  # try look-ahead on and off
    split: bool = False  # try the I/W split on and off
    microbatches_multiple_of_ranks: bool = False


KNOBS: dict[str, Knobs] = {
    "gpipe": Knobs(split=True),
    "1f1b": Knobs(split=True),
    "interleaved-1f1b": Knobs(chunks="choice", microbatches_multiple_of_ranks=True),
    "zb-h1": Knobs(),  # split by definition
    "zbv": Knobs(chunks="v"),
    "chimera": Knobs(split=True),
    "pipedream": Knobs(lookahead=True, split=True),
    "pipedream-2bw": Knobs(lookahead=True, split=True),
    "paci": Knobs(lookahead=True, split=True),
    "amdp": Knobs(directions=("", "down,up"), lookahead=True),  # "": auto, p/2 pipelines
}


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the space. `label()` is how tables and files name it."""

    family: str
    microbatches: int
    chunks: int = 1
    directions: str = ""
    lookahead: bool = False
    split: bool = False

    @property
    def synchronous(self) -> bool:
        return self.family in SYNCHRONOUS

    def stages(self, ranks: int) -> int:
        return self.chunks * ranks

    def spec(self, ranks: int) -> Spec:
        """The Spec this candidate compiles (not yet validated)."""
        fields: dict[str, object] = {"stages": self.stages(ranks),
                                     "microbatches": self.microbatches, "ranks": ranks}
        if self.directions == "down,up":
            fields["directions"] = ("down", "up")
        elif self.directions:
            fields["directions"] = self.directions
        if self.lookahead:
            fields["lookahead"] = "auto"
        if self.split:
            fields["split_backward"] = True
        spec = preset_spec(self.family, **fields)
        return spec.with_(name=self.label().replace(" ", "-"))

    def label(self) -> str:
        parts = [self.family, f"m{self.microbatches}"]
        if self.chunks > 1:
            parts.append(f"v{self.chunks}")
        if self.directions:
            parts.append(f"dirs={self.directions}")
        if self.lookahead:
            parts.append("lookahead")
        if self.split:
            parts.append("split")
        return " ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {"family": self.family, "microbatches": self.microbatches,
                "chunks": self.chunks, "directions": self.directions or None,
                "lookahead": self.lookahead, "split": self.split}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_space(families: Sequence[str], ranks: int, batch: int,
                    max_microbatches: int, chunk_choices: Iterable[int] = (2, 4),
                    max_stages: int | None = None) -> list[Candidate]:
    """Every candidate, in family order then m, v, directions, look-ahead, split.

    batch is the samples per step of one pipeline replica; m runs over its
    divisors up to max_microbatches (so every micro-batch has batch / m
    samples). Candidates needing more stages than max_stages (the model's
    layers) are left out.
    """
    chunk_choices = tuple(chunk_choices)
    out: list[Candidate] = []
    for family in families:
        knobs = KNOBS[family]
        chunks = {"one": (1,), "v": (2,), "choice": chunk_choices}[knobs.chunks]
        for m in divisors(batch):
            if m > max_microbatches:
                break
            if knobs.microbatches_multiple_of_ranks and m % ranks:
                continue
            for v in chunks:
                if max_stages is not None and v * ranks > max_stages:
                    continue
                for d in _distinct_directions(family, knobs.directions, ranks):
                    for la in (False, True) if knobs.lookahead else (False,):
                        for split in (False, True) if knobs.split else (False,):
                            out.append(Candidate(family, m, v, d, la, split))
    return out


def _distinct_directions(family: str, choices: tuple[str, ...], ranks: int) -> list[str]:
    """The direction choices that place the stages differently (AMDP's `auto` is
    `down,up` at 2 and 4 ranks: the one is kept)."""
    if len(choices) == 1:
        return list(choices)
    seen, out = set(), []
    for d in choices:
        try:
            maps = Candidate(family, ranks, directions=d).spec(ranks).resolved_directions()
        except ValueError:
            maps = (d,)  # the compiler will say why
        if maps not in seen:
            seen.add(maps)
            out.append(d)
    return out


def check_families(names: Sequence[str]) -> list[str]:
    """Known family names, in the order given, without repeats; ValueError names
    the first unknown one."""
    from schedc.errors import suggest

    out: list[str] = []
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"unknown family {name!r} (one of {', '.join(PRESETS)})"
                             f"{suggest(name, list(PRESETS))}")
        if name not in out:
            out.append(name)
    return out
