"""The cost model: how long each instruction takes and how big each message is.

Costs come from a JSON cost profile (`docs/costs.md` is the reference; the
runtime writes the same format from measured runs) or default to unit costs:
F = 1, B = 2, I = W = 1, everything else 0, zero latency, infinite bandwidth.
Those defaults are the compiler's analysis units, so a simulation without a
profile reproduces the manifest's `analysis`. A profile's missing B, I or W
are derived from the ops it gives (`derive.py`), never priced 0; its
`overhead.instruction` is added to every instruction that is not a message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schedc.errors import UserError
from schedc.instructions import TIMED_OPS
from schedc.instructions import UNIT_COSTS as TABLE_UNIT_COSTS
from schedc.simulate.derive import derive

FORMAT = "schedc-costs"
VERSION = 1
UNITS = ("unit", "s", "ms", "us", "ns")
# Ops whose time a profile may give per stage. SEND/RECV are not here: their
# time is latency + bytes / bandwidth.
UNIT_COSTS: dict[str, float] = dict(TABLE_UNIT_COSTS)
_BYTE_FIELDS = ("activation_bytes", "grad_bytes", "stored_activation_bytes",
                "weight_bytes_per_stage")
_TOP_FIELDS = {"format", "version", "unit", "default", "stages", "link", "source",
               "derived", "overhead", "cores", "comm", "host", *_BYTE_FIELDS}
COMM_MODES = ("overlap", "serial")
_OVERHEAD_FIELDS = ("instruction", "message")
# What a measured run had on its host (docs/costs.md, "Contention"): usable cores,
# torch threads per rank, ranks of the job on the host, the share of a core each
# rank's threads besides the interpreter's used (the transport's, ...), and the
# share of processor sharing its ops really got.
_HOST_FIELDS = ("cores", "threads_per_rank", "ranks", "background", "efficiency")


class CostsError(UserError):
    """A cost profile that cannot be used: names the file and the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class CostModel:
    """Per-stage op times, message sizes and one link model for every pair.

    stage_times[s][op] is the time of `op` on stage s; a missing B, I or W is
    derived from the stage's other ops (`derive.py`), other missing ops take 0.
    `overhead` is added to every op that is not a message (the runtime's cost
    of dispatching an instruction), `message_overhead` to every message's time
    on the wire (the runtime's own work per message).
    Byte lists are per stage (None: not given). activation_bytes[s] is the size
    of stage s's output sent forward; grad_bytes[s] of the input gradient stage
    s sends back; stored_activation_bytes[s] what stage s keeps from F until
    its backward (defaults to activation_bytes).
    """

    stage_times: tuple[dict[str, float], ...] = ()
    default_times: dict[str, float] = field(default_factory=lambda: dict(UNIT_COSTS))
    unit: str = "unit"
    activation_bytes: tuple[float, ...] | None = None
    grad_bytes: tuple[float, ...] | None = None
    stored_activation_bytes: tuple[float, ...] | None = None
    weight_bytes: tuple[float, ...] | None = None
    latency: float = 0.0
    bandwidth: float = math.inf  # bytes per time unit
    overhead: float = 0.0  # per instruction that is not a message
    message_overhead: float = 0.0  # per message, added to its time on the wire
    # The library's CPU per message (`link.cpu`): inside the latency on the wire, and
    # with message_overhead the CPU a message takes from its rank (contention.py).
    link_cpu: float = 0.0
    # Ranks that can compute at once (CPU ranks sharing cores, contention.py; None:
    # each rank its own).
    cores: int | None = None
    # Share of a core each rank's other threads use while it runs (the transport's
    # threads: a CPU load beside its ops), under `cores` (contention.py).
    background: float = 0.0
    # The share of processor sharing the ops really got on the measured host (a
    # woken rank waiting for its turn on a core, ...; 1: ideal), under `cores`.
    efficiency: float = 1.0
    # How the measured transport holds a rank (docs/costs.md): "serial" (a send waits
    # for its receiver, a batch is waited for whole: gloo, --posted-batches 1),
    # "overlap", or None (not said: the simulator's default, overlap).
    comm: str | None = None
    origin: str = field(default="costs", compare=False)  # its file, for later errors
    notes: dict[str, str] = field(default_factory=dict, compare=False)  # the profile's "derived"

    def op_time(self, op: str, stage: int) -> float:
        times = _at(self.stage_times, stage) if self.stage_times else self.default_times
        t = times.get(op)
        if t is None:
            got = derive(op, times, stage)
            t = 0.0 if got is None else got[0]
        return t + self.overhead

    def derivations(self, num_stages: int) -> dict[str, list[str | None]]:
        """op -> per stage, the rule that priced it (None where the profile gives
        it); only ops derived somewhere."""
        out: dict[str, list[str | None]] = {}
        for s in range(num_stages):
            times = _at(self.stage_times, s) if self.stage_times else self.default_times
            for op in ("B", "I", "W"):
                got = None if op in times else derive(op, times, s)
                if got is not None:
                    out.setdefault(op, [None] * num_stages)[s] = got[1]
        return out

    def message_time(self, kind: str, stage: int) -> float:
        """Wire time (without latency) of the ACT or GRAD message sent by `stage`."""
        sizes = self.activation_bytes if kind == "ACT" else self.grad_bytes
        if sizes is None or math.isinf(self.bandwidth):
            return self.message_overhead
        return _at(sizes, stage) / self.bandwidth + self.message_overhead

    def allreduce_time(self, stage: int, participants: int) -> float:
        """Profile time plus a ring all-reduce of the stage's weight gradient."""
        base = self.op_time("ALLREDUCE", stage)
        if participants < 2 or self.weight_bytes is None:
            return base
        steps = 2 * (participants - 1)
        wire = 0.0 if math.isinf(self.bandwidth) else _at(self.weight_bytes, stage) / self.bandwidth
        return base + steps * self.latency + wire * steps / participants

    def stored_bytes(self, stage: int) -> float | None:
        sizes = self.stored_activation_bytes or self.activation_bytes
        return None if sizes is None else _at(sizes, stage)

    def weight_bytes_of(self, stage: int) -> float | None:
        return None if self.weight_bytes is None else _at(self.weight_bytes, stage)

    def check_stages(self, num_stages: int, where: str | None = None) -> None:
        """Per-stage lists must cover the program's stages (or be one value)."""
        where = where or self.origin
        lists = {"stages": self.stage_times, "activation_bytes": self.activation_bytes,
                 "grad_bytes": self.grad_bytes, "weight_bytes_per_stage": self.weight_bytes,
                 "stored_activation_bytes": self.stored_activation_bytes}
        for name, values in lists.items():
            if values and len(values) not in (1, num_stages):
                raise CostsError(where, f"{name} has {len(values)} entries but the program "
                                        f"has {num_stages} stages (give {num_stages} or 1)")


def _at(values: Sequence[Any], stage: int) -> Any:
    return values[stage] if len(values) > 1 else values[0]


def unit_costs() -> CostModel:
    return CostModel()


def load_costs(path: str | Path) -> CostModel:
    """Read and validate a `schedc-costs` JSON profile."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CostsError(where, "no such file") from None
    except OSError as exc:
        raise CostsError(where, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CostsError(where, "not JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CostsError(f"{where}:{exc.lineno}:{exc.colno}", f"not JSON: {exc.msg}") from None
    return costs_from_dict(data, where)


def costs_from_dict(data: Any, where: str = "costs") -> CostModel:
    if not isinstance(data, dict):
        raise CostsError(where, "a cost profile is a JSON object")
    if data.get("format") != FORMAT:
        raise CostsError(where, f'"format" must be "{FORMAT}", got {data.get("format")!r}')
    if data.get("version") != VERSION:
        raise CostsError(where, f'"version" must be {VERSION}, got {data.get("version")!r}')
    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        known = ", ".join(sorted(_TOP_FIELDS))
        raise CostsError(where, f"unknown field {unknown[0]!r}; known: {known}")
    unit = data.get("unit", "s")
    if unit not in UNITS:
        raise CostsError(where, f'"unit" must be one of {", ".join(UNITS)}, got {unit!r}')
    default = _times(data.get("default", {}), f"{where}: default")
    stages = data.get("stages", [])
    if not isinstance(stages, list):
        raise CostsError(where, '"stages" must be a list of objects, one per stage')
    stage_times = tuple({**default, **_times(s, f"{where}: stages[{i}]")}
                        for i, s in enumerate(stages))
    if not stage_times and not default:
        raise CostsError(where, 'give op times in "stages" (per stage) or "default"')
    latency, bandwidth, link_cpu = _link(data.get("link", {}), where)
    return CostModel(
        stage_times=stage_times, default_times=default, unit=unit,
        activation_bytes=_bytes(data, "activation_bytes", where),
        grad_bytes=_bytes(data, "grad_bytes", where) or _bytes(data, "activation_bytes", where),
        stored_activation_bytes=_bytes(data, "stored_activation_bytes", where),
        weight_bytes=_bytes(data, "weight_bytes_per_stage", where),
        latency=latency, bandwidth=bandwidth, link_cpu=link_cpu, origin=where,
        **_overhead(data.get("overhead", {}), where),
        **_host(data.get("cores"), data.get("host"), where),
        comm=_comm(data.get("comm"), where),
        notes=_notes(data.get("derived", {}), where),
    )


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CostsError(where, f"must be a non-negative number, got {value!r}")
    if math.isnan(value):
        raise CostsError(where, "must be a number, got NaN")
    return float(value)


def _times(obj: Any, where: str) -> dict[str, float]:
    if not isinstance(obj, dict):
        raise CostsError(where, "must be an object of op times, e.g. {\"F\": 1.0, \"B\": 2.0}")
    out = {}
    for op, value in obj.items():
        if op not in TIMED_OPS:
            raise CostsError(where, f"unknown op {op!r}; timed ops: {', '.join(TIMED_OPS)}")
        out[op] = _number(value, f"{where}.{op}")
    return out


def _bytes(data: dict[str, Any], name: str, where: str) -> tuple[float, ...] | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        if not value:
            raise CostsError(f"{where}: {name}", "must not be empty")
        return tuple(_number(v, f"{where}: {name}[{i}]") for i, v in enumerate(value))
    return (_number(value, f"{where}: {name}"),)


def _overhead(obj: Any, where: str) -> dict[str, float]:
    if not isinstance(obj, dict):
        raise CostsError(f"{where}: overhead", 'must be {"instruction": .., "message": ..}')
    unknown = sorted(set(obj) - set(_OVERHEAD_FIELDS))
    if unknown:
        raise CostsError(f"{where}: overhead", f"unknown field {unknown[0]!r}; known: "
                                               f"{', '.join(_OVERHEAD_FIELDS)}")
    return {"overhead": _number(obj.get("instruction", 0.0), f"{where}: overhead.instruction"),
            "message_overhead": _number(obj.get("message", 0.0), f"{where}: overhead.message")}


def _comm(value: Any, where: str) -> str | None:
    if value is not None and value not in COMM_MODES:
        raise CostsError(f"{where}: comm", f"must be one of {', '.join(COMM_MODES)}, "
                                           f"got {value!r}")
    return value


def _host(cores: Any, host: Any, where: str) -> dict[str, Any]:
    """`cores` (ranks that compute at once) and `background` from the profile's
    `cores` and `host`; without `cores`, the host's cores over its threads per rank."""
    if host is None:
        return {"cores": _cores(cores, where)}
    if not isinstance(host, dict):
        raise CostsError(f"{where}: host", 'must be {"cores": .., "threads_per_rank": .., '
                                           '"ranks": .., "background": .., "efficiency": ..}')
    unknown = sorted(set(host) - set(_HOST_FIELDS))
    if unknown:
        raise CostsError(f"{where}: host", f"unknown field {unknown[0]!r}; known: "
                                           f"{', '.join(_HOST_FIELDS)}")
    for key in ("cores", "threads_per_rank", "ranks"):
        _cores(host.get(key), where, f"host.{key}")
    background = _number(host.get("background", 0.0), f"{where}: host.background")
    if background >= 1:
        raise CostsError(f"{where}: host.background",
                         f"must be below 1 (a share of one core), got {background!r}")
    efficiency = _number(host.get("efficiency", 1.0), f"{where}: host.efficiency")
    if not 0 < efficiency <= 1:
        raise CostsError(f"{where}: host.efficiency",
                         f"must be above 0 and at most 1, got {efficiency!r}")
    slots = _cores(cores, where)
    if slots is None and host.get("cores") is not None:
        slots = max(1, host["cores"] // host.get("threads_per_rank", 1))
    return {"cores": slots, "background": background, "efficiency": efficiency}


def _cores(value: Any, where: str, name: str = "cores") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CostsError(f"{where}: {name}", f"must be a positive integer, got {value!r}")
    return value


def _notes(obj: Any, where: str) -> dict[str, str]:
    """"derived": op -> how the profile's writer obtained its time (text)."""
    if not isinstance(obj, dict):
        raise CostsError(f"{where}: derived", 'must be an object, e.g. {"I": "0.5 * B"}')
    for op, text in obj.items():
        if op not in TIMED_OPS:
            raise CostsError(f"{where}: derived", f"unknown op {op!r}; timed ops: "
                                                  f"{', '.join(TIMED_OPS)}")
        if not isinstance(text, str):
            raise CostsError(f"{where}: derived.{op}", f"must be a string, got {text!r}")
    return dict(obj)


def _link(obj: Any, where: str) -> tuple[float, float, float]:
    if not isinstance(obj, dict):
        raise CostsError(f"{where}: link", 'must be {"latency": .., "bandwidth": ..}')
    unknown = sorted(set(obj) - {"latency", "bandwidth", "cpu"})
    if unknown:
        raise CostsError(f"{where}: link", f"unknown field {unknown[0]!r}")
    latency = _number(obj.get("latency", 0.0), f"{where}: link.latency")
    cpu = _number(obj.get("cpu", 0.0), f"{where}: link.cpu")
    bandwidth = obj.get("bandwidth")
    if bandwidth is None:
        return latency, math.inf, cpu
    bw = _number(bandwidth, f"{where}: link.bandwidth")
    if bw == 0:
        raise CostsError(f"{where}: link.bandwidth", "must be positive (bytes per time unit)")
    return latency, bw, cpu
