"""The instruction table: everything the compiler, simulator and pictures know
about an op, in one place.

One `OpInfo` row per op says its fields (required and optional), its kind
(compute, message, weight, collective), for a message the channel it travels
on and the stage it comes from, its unit cost, what it reads and writes, and
the rule its inputs follow. Loader validation (`schedc.files`), the verifier
(`schedc.verify`, `schedc.versions`), the replay core (`schedc.replay`), the
graph and DOT writer (`schedc.graph`), the lowering's message placement and
version plan (`schedc.lower`, `schedc.simulate.compute_only`: `AROUND`,
`version_of`), every cost model (`schedc.order`, `schedc.simulate.costs`),
the pictures' styles (`schedc.viz.style`), the text grid (`schedc.report`),
the runtime's message boundaries (`boundary`) and the docs table
(`docs/programs.md`, checked by tests/compiler/test_instructions.py) read it;
tests/compiler/test_one_table.py checks that nothing else spells an op's
facts. Adding an instruction starts with a row here (docs/programs.md,
"Adding an instruction").

Field types and ranges are per field name (`FIELDS`): a field means the same
on every op that carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPUTE, MESSAGE, WEIGHT, COLLECTIVE = "compute", "message", "weight", "collective"


@dataclass(frozen=True)
class Field:
    """type: "int", "bool", "number" or "ranks"; low: the least value of an int
    (None: checked against the manifest, e.g. stage < num_stages)."""

    type: str
    low: int | None
    meaning: str


FIELDS: dict[str, Field] = {
    "stage": Field("int", None, "stage of the replica the op works on (0..stages-1); the "
                   "producer for a send, the consumer for a receive"),
    "mb": Field("int", 0, "micro-batch index"),
    "pipeline": Field("int", None, "pipeline (direction) of the replica, 0..pipelines-1"),
    "version": Field("int", 0, "weight version read (compute), produced (STEP) or concerned"),
    "peer": Field("int", None, "the other rank of a message (not this rank)"),
    "group": Field("ranks", None, "sorted ranks holding a replica of the stage"),
    "count": Field("int", 1, "micro-batch gradients the step averages"),
    "alpha": Field("number", None, "look-ahead extrapolation factor"),
    "lookahead": Field("bool", None, "reads (F) / points at (SWAP) extrapolated weights"),
}
INT_FIELDS = tuple(name for name, f in FIELDS.items() if f.type == "int")


@dataclass(frozen=True)
class OpInfo:
    """One row of the instruction table.

    message: for a message op, "ACT" or "GRAD"; send: True for the sending end.
    hop: consumer stage - producer stage of the message (+1 forward, -1 back).
    The channel of a message is (sender, receiver, pipeline): messages on one
    channel match in order, whatever their kind (one communicator per pipeline).
    needs: (op, stage offset) pairs that must have run (on this rank or, for a
    cross-rank input, arrived by a receive) before this op, for the same
    pipeline and micro-batch; "grad" stands for the op producing the input
    gradient (I when the backward is split, else B), "wgrad" for the op
    producing the weight gradient (W when split, else B).
    frees_activation: the op ends a micro-batch's stay "in flight" on its stage
    (its stored activations are freed): B, or I when the backward is split.
    version_of: where weights are stashed, the op of the same micro-batch and
    stage whose weight version this op reads (the backward reads its forward's);
    empty: the op reads the version its stage is at (or, for the forward, the
    Spec's fixed delay).
    hue: the pictures' colour (hue, saturation); label: the legend's name for
    the op (its name when empty; `legend`); short: its cell in the text grid
    (`schedc show --comms`; its name when empty).
    """

    name: str
    kind: str
    required: tuple[str, ...]
    meaning: str
    optional: tuple[str, ...] = ()
    unit_cost: float = 0.0
    message: str | None = None
    send: bool = False
    hop: int = 0
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    needs: tuple[tuple[str, int], ...] = ()
    frees_activation: bool = False
    version_of: str = ""
    hue: tuple[int, int] = (0, 0)
    label: str = ""
    short: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def legend(self) -> str:
        return self.label or self.name


_C = ("stage", "mb", "pipeline", "version")
_M = ("stage", "mb", "pipeline", "peer")
_W = ("stage", "pipeline", "version")

TABLE: dict[str, OpInfo] = {op.name: op for op in (
    OpInfo("F", COMPUTE, _C, "forward", ("lookahead",), 1.0, reads=("activation", "weights"),
           writes=("activation",), needs=(("F", -1),), hue=(212, 70), label="forward"),
    OpInfo("B", COMPUTE, _C, "backward (input and weight gradients)", (), 2.0,
           reads=("gradient", "activation", "weights"), writes=("gradient", "weight gradient"),
           needs=(("F", 0), ("grad", +1)), frees_activation=True, version_of="F", hue=(28, 85),
           label="backward"),
    OpInfo("I", COMPUTE, _C, "backward for inputs only", (), 1.0,
           reads=("gradient", "activation", "weights"), writes=("gradient",),
           needs=(("F", 0), ("grad", +1)), frees_activation=True, version_of="F", hue=(45, 90),
           label="backward (input)"),
    OpInfo("W", COMPUTE, _C, "backward for weights only", (), 1.0,
           reads=("activation", "weights"), writes=("weight gradient",),
           needs=(("I", 0),), version_of="F", hue=(280, 45), label="backward (weights)"),
    OpInfo("SEND_ACT", MESSAGE, _M, "send the stage's output forward", message="ACT",
           send=True, hop=+1, reads=("activation",), needs=(("F", 0),), hue=(212, 15),
           short=">a"),
    OpInfo("RECV_ACT", MESSAGE, _M, "receive the previous stage's output", message="ACT",
           hop=+1, writes=("activation",), hue=(212, 15), short="<a"),
    OpInfo("SEND_GRAD", MESSAGE, _M, "send the input gradient back", message="GRAD",
           send=True, hop=-1, reads=("gradient",), needs=(("grad", 0),), hue=(28, 15),
           short=">g"),
    OpInfo("RECV_GRAD", MESSAGE, _M, "receive the next stage's input gradient",
           message="GRAD", hop=-1, writes=("gradient",), hue=(28, 15), short="<g"),
    OpInfo("ACC", WEIGHT, ("stage", "mb", "pipeline"), "add the micro-batch's weight "
           "gradient to the accumulator", reads=("weight gradient",),
           writes=("accumulator",), needs=(("wgrad", 0),), hue=(90, 30),
           label="accumulate", short="+"),
    OpInfo("ALLREDUCE", COLLECTIVE, ("stage", "pipeline", "group"), "sum the accumulators "
           "of the stage's replicas", reads=("accumulator",), writes=("accumulator",),
           hue=(330, 40), label="all-reduce", short="AR"),
    OpInfo("STEP", WEIGHT, ("stage", "pipeline", "version", "count"), "optimizer step to "
           "`version`, averaging `count` gradients", reads=("accumulator", "weights"),
           writes=("weights",), hue=(0, 80), label="optimizer step", short="S"),
    OpInfo("STASH", WEIGHT, _W, "keep a copy of the current version", reads=("weights",),
           writes=("stash",), hue=(160, 40), short="st"),
    OpInfo("RELEASE", WEIGHT, _W, "free a stashed version", writes=("stash",), hue=(160, 20),
           short="rl"),
    OpInfo("SWAP", WEIGHT, _W, "point the parameters at a version", ("lookahead",),
           reads=("stash",), writes=("weights",), hue=(190, 20), short="sw"),
    OpInfo("LOOKAHEAD", WEIGHT, (*_W, "alpha"), "extrapolate weights from the current "
           "version", reads=("weights",), writes=("look-ahead weights",), hue=(300, 60),
           short="la"),
    OpInfo("SPARSE_SYNC", WEIGHT, _W, "exchange a slice of the weights with the other "
           "data-parallel replicas", reads=("weights",), writes=("weights",), short="ss"),
)}

ALL_OPS = tuple(TABLE)
COMPUTE_OPS = tuple(n for n, o in TABLE.items() if o.kind == COMPUTE)
SEND_OPS = tuple(n for n, o in TABLE.items() if o.kind == MESSAGE and o.send)
RECV_OPS = tuple(n for n, o in TABLE.items() if o.kind == MESSAGE and not o.send)
COMM_OPS = SEND_OPS + RECV_OPS
COLLECTIVE_OPS = tuple(n for n, o in TABLE.items() if o.kind == COLLECTIVE)
WEIGHT_OPS = tuple(n for n, o in TABLE.items() if o.kind in (WEIGHT, COLLECTIVE))
REQUIRED_FIELDS = {n: o.required for n, o in TABLE.items()}
OPTIONAL_FIELDS = {n: o.optional for n, o in TABLE.items() if o.optional}
UNIT_COSTS = {n: o.unit_cost for n, o in TABLE.items() if o.unit_cost}
FREES_ACTIVATION = tuple(n for n, o in TABLE.items() if o.frees_activation)
# A micro-batch is "in flight" on its stage from the compute op that stores its
# activation (F) to the one that frees it (FREES_ACTIVATION).
STORES_ACTIVATION = tuple(n for n, o in TABLE.items()
                          if o.kind == COMPUTE and "activation" in o.writes)
# The compute op that reads the version its stage is at (F); the others read its
# version where weights are stashed (version_of). A step gates it.
VERSION_SOURCE = next(n for n in COMPUTE_OPS if not TABLE[n].version_of)
# The compute ops that may read extrapolated (look-ahead) weights: F.
READS_LOOKAHEAD = tuple(n for n in COMPUTE_OPS if "lookahead" in TABLE[n].optional)
TIMED_OPS = tuple(n for n, o in TABLE.items() if o.kind != MESSAGE)  # ops a profile times


def info(op: str) -> OpInfo:
    """The row of `op` (KeyError for an unknown op)."""
    return TABLE[op]


def unit_cost(op: str) -> float:
    """The op's time under the compiler's unit cost model (0 when free)."""
    row = TABLE.get(op)
    return row.unit_cost if row else 0.0


def counterpart(op: str) -> str:
    """The other end of a message op (SEND_ACT <-> RECV_ACT)."""
    row = TABLE[op]
    return next(n for n, o in TABLE.items()
                if o.kind == MESSAGE and o.message == row.message and o.send != row.send)


def message_key(op: str, stage: int, mb: int, pipeline: int) -> tuple:
    """What a message carries, the same on both ends: (kind, producer stage, mb,
    pipeline). A send and a receive meet when their keys are equal."""
    row = TABLE[op]
    producer = stage if row.send else stage - row.hop
    return (row.message, producer, mb, pipeline)


def boundary(op: str, stage: int) -> int:
    """The stage boundary b (between stages b and b + 1) a message op of `stage`
    crosses: SEND_ACT and RECV_GRAD of s cross s, RECV_ACT and SEND_GRAD s - 1."""
    row = TABLE[op]
    producer = stage if row.send else stage - row.hop
    return min(producer, producer + row.hop)


def concrete(name: str, split_backward: bool) -> str:
    """A name of `needs` made concrete for the schedule: "grad" is I when the
    backward is split, else B; "wgrad" is W, else B; an op's name is itself."""
    if name == "grad":
        return "I" if split_backward else "B"
    if name == "wgrad":
        return "W" if split_backward else "B"
    return name


def resolve_needs(op: str, split_backward: bool) -> tuple[tuple[str, int], ...]:
    """`needs` with "grad" / "wgrad" made concrete for the schedule."""
    return tuple((concrete(k, split_backward), d) for k, d in TABLE[op].needs)


def schedule_compute_ops(split_backward: bool) -> tuple[str, ...]:
    """The compute ops a schedule runs for each (micro-batch, stage): F and the
    backward ("grad", then "wgrad" where it is another op)."""
    return tuple(dict.fromkeys(("F", concrete("grad", split_backward),
                                concrete("wgrad", split_backward))))


def consumer(recv: str, split_backward: bool) -> str:
    """The compute op that reads what the receive `recv` brings: the one whose
    `needs` reach back over the message's hop (F for RECV_ACT; B, or I when the
    backward is split, for RECV_GRAD)."""
    hop = TABLE[recv].hop
    return next(op for op in schedule_compute_ops(split_backward)
                if any(d == -hop for _, d in TABLE[op].needs))


@dataclass(frozen=True)
class Around:
    """What a program puts around one compute op, read from `needs` and `hop`.

    receives: (receive op, peer stage offset, producing op) for each input that
    comes from a neighbouring stage: posted before the op when another rank
    holds that stage. sends: (send op, peer stage offset) for each message
    whose one need is the op: posted after it, to the rank holding the stage
    the message goes to. local: the other ops whose one need it is (ACC after
    the op producing the weight gradient), on this rank, after the sends.
    B is a whole backward, I and W its halves: the rule is the same whichever
    a schedule uses (a compute-only order may mix them).
    """

    receives: tuple[tuple[str, int, str], ...]
    sends: tuple[tuple[str, int], ...]
    local: tuple[str, ...]


def _around(op: str) -> Around:
    receives: dict[tuple[str, int, str], None] = {}
    followers: dict[str, None] = {}
    for split in (False, True):
        for recv in RECV_OPS:
            if consumer(recv, split) == op:
                offset = -TABLE[recv].hop
                producer = next(k for k, d in resolve_needs(op, split) if d == offset)
                receives[(recv, offset, producer)] = None
        for name, row in TABLE.items():
            if row.kind != COMPUTE and resolve_needs(name, split) == ((op, 0),):
                followers[name] = None
    return Around(tuple(receives), tuple((n, TABLE[n].hop) for n in followers if n in SEND_OPS),
                  tuple(n for n in followers if n not in SEND_OPS))


AROUND: dict[str, Around] = {op: _around(op) for op in COMPUTE_OPS}


def docs_table() -> str:
    """The markdown table of docs/programs.md's "Instructions" section."""
    lines = ["| op | kind | fields (optional in brackets) | unit cost | meaning |",
             "|---|---|---|---|---|"]
    for o in TABLE.values():
        fields = ", ".join(o.required) + "".join(f" [{f}]" for f in o.optional)
        cost = f"{o.unit_cost:g}" if o.unit_cost else "0"
        lines.append(f"| `{o.name}` | {o.kind} | {fields} | {cost} | {o.meaning} |")
    return "\n".join(lines) + "\n"
