"""Write and read program directories (manifest.json + rank<r>.json).

Loading validates everything before anyone uses it, so a damaged or
hand-edited directory is one clear message, never a traceback:

- the manifest's schema: every field's presence and type, the Spec (valid,
  and its `spec_hash`), and that world size, stages, pipelines,
  stage-to-rank maps and `synchronous` agree with the Spec;
- every rank file's schema: every instruction's `op`, its fields exactly as
  the instruction table (`schedc.instructions`) says, their types and
  ranges (stage, pipeline, peer, group members within the manifest's);
- integrity: the sha256 of each rank file against the manifest's `files`
  map, and `programs_hash`, one hash over the manifest and every file hash
  (`programs_hash(manifest)`): the identity of the whole set, which ranks
  compare at start-up and checkpoints record.

Every problem is a ProgramFileError naming the file and the field, e.g.
`out/rank1.json: body[4] (F): field 'stage' must be an integer, got "2"`.
`check_hashes=False` (`schedc check`, after a hand edit) skips the integrity
checks only; the verifier then re-proves the edited programs, and
`rehash_programs` (`schedc check --rehash`) records their new hashes so that
every other command accepts the set again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from schedc.errors import ProgramFileError
from schedc.instructions import FIELDS, INT_FIELDS, TABLE
from schedc.overlap import Overlap
from schedc.program import FORMAT_VERSION, Instr, Manifest, RankProgram

MANIFEST = "manifest.json"
SECTIONS = ("prologue", "body", "epilogue")
# Manifest fields and their JSON types; `analysis` and `programs_hash` are optional.
_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "spec": dict, "spec_hash": str, "world_size": int,
    "num_stages": int, "num_pipelines": int, "stage_to_rank": list, "period": dict,
    "synchronous": bool, "files": dict,
}
_MANIFEST_OPTIONAL = {"analysis": dict, "programs_hash": str, "overlap": dict}


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode()


def _dumps_manifest(data: dict[str, Any]) -> bytes:
    """As _dumps, with an asynchronous analysis's version table (a row per
    micro-batch and stage) one stage per line, by the C encoder."""
    analysis = data.get("analysis")
    table = analysis.get("versions") if isinstance(analysis, dict) else None
    if not isinstance(table, dict) or not isinstance(table.get("by_stage"), dict):
        return _dumps(data)
    mark = "@versions@"
    text = json.dumps({**data, "analysis": {**analysis, "versions": mark}}, indent=1)
    rows = ",\n   ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in table["by_stage"].items())
    block = (f'{{"columns": {json.dumps(table.get("columns"))}, "by_stage": {{\n   {rows}}}}}')
    return (text.replace(json.dumps(mark), block, 1) + "\n").encode()


def _dumps_program(prog: RankProgram) -> bytes:
    """One instruction per line: readable and diffable. The bytes are those of
    `json.dumps` with separators (", ", ": ") per instruction of
    `prog.to_dict()`, written straight from the instructions (no dict per
    instruction; the program files of a large compile are the bulk of its
    output)."""
    parts = [f'{{"format_version": {FORMAT_VERSION}, "rank": {json.dumps(prog.rank)},']
    sections = prog.sections()
    for n, (key, seq) in enumerate(sections.items()):
        lines = ",\n  ".join(_lines(seq))
        tail = "" if n == len(sections) - 1 else ","
        parts.append(f' "{key}": [' + (f"\n  {lines}\n ]" if lines else "]") + tail)
    return ("\n".join(parts) + "}\n").encode()


# Instr's fields, each with its JSON key as written and a getter.
_NAMES = tuple(f.name for f in fields(Instr))
_KEYS = {name: f', "{name}": ' for name in _NAMES[1:]}
_GETTERS = tuple((name, attrgetter(name)) for name in _NAMES)
_ALL = attrgetter(*_NAMES)
_INTS = {int, type(None)}  # an int field's usual values (not bool, not float)


def _lines(seq: Sequence[Instr]) -> list[str]:
    """`_instr_json` of every instruction of `seq`, a field at a time: each
    field's column of values becomes a column of strings ("" where None),
    and a line is its row of strings joined. Where a column holds only
    integers (or only str for `op`), each distinct value is written once."""
    columns = [c for c in (_column(name, get, seq) for name, get in _GETTERS) if c is not None]
    columns.append(["}"] * len(seq))
    return list(map("".join, zip(*columns, strict=True)))


def _column(name: str, get: attrgetter, seq: Sequence[Instr]) -> list[str] | None:
    """Field `name` of every instruction of `seq` as written (None: no
    instruction has it)."""
    values = list(map(get, seq))
    if values.count(None) == len(values):
        return None if name != "op" else ['{"op": null'] * len(values)
    types = set(map(type, values))
    if name == "op":
        if types == {str}:
            text = {v: '{"op": ' + json.dumps(v) for v in set(values)}
            return list(map(text.__getitem__, values))
        return ['{"op": ' + json.dumps(v) for v in values]
    key = _KEYS[name]
    if types <= _INTS:  # (a dict would take True for 1, and 1.0)
        distinct = set(values)
        distinct.discard(None)
        text = dict(zip(distinct, map(key.__add__, map(str, distinct)), strict=True))
        text[None] = ""
        return list(map(text.__getitem__, values))
    return ["" if v is None else key + _value_json(v) for v in values]


def _value_json(value: Any) -> str:
    """A field's value as json.dumps writes it (a group as a list)."""
    if type(value) is int:
        return str(value)
    return json.dumps(list(value) if type(value) is tuple else value)


def _instr_json(ins: Instr) -> str:
    """`json.dumps(ins.to_dict(), separators=(", ", ": "))`: one instruction's
    line as `_lines` writes it."""
    values = _ALL(ins)
    out = ['{"op": ' + json.dumps(values[0])]
    for name, value in zip(_NAMES[1:], values[1:], strict=True):
        if value is not None:
            out.append(_KEYS[name] + _value_json(value))
    return "".join(out) + "}"


def _sha(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def programs_hash(manifest: Manifest) -> str:
    """One hash over the manifest (without its analysis) and every rank file's hash."""
    data = manifest.to_dict()
    data.pop("analysis", None)
    return _sha(json.dumps(data, sort_keys=True).encode())


def file_mode() -> int:
    """The mode every file schedc writes gets (program files and checkpoints
    alike): what `open()` would give, 0o666 less the user's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, file_mode())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_programs(directory: str | os.PathLike, manifest: Manifest,
                   programs: tuple[RankProgram, ...] | list[RankProgram]) -> Path:
    """Write every rank file, then the manifest naming their hashes."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProgramFileError(str(out), f"cannot create directory: {exc.strerror}") from None
    _remove_stale_ranks(out, len(programs))
    files = {}
    for prog in programs:
        blob = _dumps_program(prog)
        name = f"rank{prog.rank}.json"
        _atomic_write(out / name, blob)
        files[name] = _sha(blob)
    data = manifest.to_dict()
    data["files"] = files
    data["programs_hash"] = programs_hash(Manifest.from_dict(data))
    _atomic_write(out / MANIFEST, _dumps_manifest(data))
    return out


def _remove_stale_ranks(out: Path, ranks: int) -> None:
    """Rank files of an earlier, larger compile into the same directory go."""
    for path in out.glob("rank*.json"):
        suffix = path.stem[4:]
        if suffix.isdigit() and int(suffix) >= ranks:
            try:
                path.unlink()
            except OSError as exc:
                raise ProgramFileError(str(path), f"cannot remove a stale rank file: "
                                       f"{exc.strerror}") from None


def rehash_programs(directory: str | os.PathLike) -> Manifest:
    """Record the current hashes of a (hand-edited) program directory in its
    manifest: `files`, `spec_hash` and `programs_hash`. Callers verify first
    (`schedc check --rehash`); the rank files are kept byte for byte."""
    from schedc.spec import Spec

    root = Path(directory)
    manifest, _ = load_programs(root, check_hashes=False)
    data, _ = _read_json(root / MANIFEST)
    data["files"] = {f"rank{r}.json": _sha(_read_json(root / f"rank{r}.json")[1])
                     for r in range(manifest.world_size)}
    data["spec_hash"] = Spec.from_dict(data["spec"]).hash()
    data.pop("programs_hash", None)
    data["programs_hash"] = programs_hash(Manifest.from_dict(data))
    _atomic_write(root / MANIFEST, _dumps(data))
    return load_programs(root)[0]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"field {key!r} appears twice")
        out[key] = value
    return out


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ProgramFileError(str(path), "missing") from None
    except OSError as exc:
        raise ProgramFileError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        return json.loads(blob, object_pairs_hook=_no_duplicates), blob
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ProgramFileError(str(path), f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ProgramFileError(str(path), "not valid JSON: nested too deeply") from None


def load_programs(directory: str | os.PathLike, check_hashes: bool = True
                  ) -> tuple[Manifest, list[RankProgram]]:
    root = Path(directory)
    if not root.is_dir():
        raise ProgramFileError(str(root), "not a program directory")
    data, _ = _read_json(root / MANIFEST)
    manifest = _manifest_from(root / MANIFEST, data, check_hashes)
    programs = []
    for r in range(manifest.world_size):
        name = f"rank{r}.json"
        pdata, blob = _read_json(root / name)
        if check_hashes and manifest.files.get(name) != _sha(blob):
            raise ProgramFileError(str(root / name), "field 'files' of manifest.json: hash "
                                   "mismatch (the file changed after compile; "
                                   f"`schedc check --rehash {root}` re-verifies the set "
                                   "and records its hashes)")
        programs.append(_program_from(root / name, pdata, r, manifest))
    return manifest, programs


# ---- manifest -------------------------------------------------------------------
def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list",
             bool: "true or false", float: "a number"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind is not bool and kind != (bool,):
        return False  # JSON true is not an integer
    return isinstance(value, kind)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) \
        else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _require(path: Path, data: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ProgramFileError(str(path), f"field {key!r} is missing")
    if not _is(data[key], kind):
        raise ProgramFileError(str(path), f"field {key!r} must be {_type_name(kind)}, "
                               f"got {_short(data[key])}")
    return data[key]


def _manifest_from(path: Path, data: Any, check_hashes: bool = True) -> Manifest:
    if not isinstance(data, dict):
        raise ProgramFileError(str(path), "must hold a JSON object")
    if _require(path, data, "format", str) != "schedc-programs":
        raise ProgramFileError(str(path), "field 'format' is not 'schedc-programs'")
    version = _require(path, data, "format_version", int)
    if version != FORMAT_VERSION:
        raise ProgramFileError(str(path), f"field 'format_version': {version} is not "
                               f"supported (this schedc reads {FORMAT_VERSION})")
    for key, kind in _MANIFEST_FIELDS.items():
        _require(path, data, key, kind)
    for key, kind in _MANIFEST_OPTIONAL.items():
        if key in data:
            _require(path, data, key, kind)
    unknown = sorted(set(data) - set(_MANIFEST_FIELDS) - set(_MANIFEST_OPTIONAL))
    if unknown:
        raise ProgramFileError(str(path), f"field {unknown[0]!r} is unknown")
    w, s, p = data["world_size"], data["num_stages"], data["num_pipelines"]
    for key in ("world_size", "num_stages", "num_pipelines"):
        if data[key] < 1:
            raise ProgramFileError(str(path), f"field {key!r} must be at least 1")
    _check_maps(path, data["stage_to_rank"], w, s, p)
    _check_period(path, data["period"])
    _check_overlap(path, data.get("overlap"))
    _check_spec(path, data, check_hashes)
    files = data["files"]
    for r in range(w):
        if not isinstance(files.get(f"rank{r}.json"), str):
            raise ProgramFileError(str(path), f"field 'files' names no hash for rank{r}.json")
    manifest = Manifest.from_dict({k: v for k, v in data.items() if k != "programs_hash"})
    if check_hashes and "programs_hash" in data and data["programs_hash"] != \
            programs_hash(manifest):
        raise ProgramFileError(str(path), "field 'programs_hash' does not match the manifest "
                               "and its file hashes (edited after compile; `schedc check "
                               f"--rehash {path.parent}` re-verifies the set and records "
                               "its hashes)")
    return manifest


def _check_maps(path: Path, maps: list, w: int, s: int, p: int) -> None:
    if len(maps) != p:
        raise ProgramFileError(str(path), f"field 'stage_to_rank' has {len(maps)} maps for "
                               f"num_pipelines {p}")
    for i, m in enumerate(maps):
        if not isinstance(m, list) or len(m) != s:
            raise ProgramFileError(str(path), f"field 'stage_to_rank'[{i}] must list a rank "
                                   f"for each of the {s} stages")
        for r in m:
            if not _is(r, int) or not 0 <= r < w:
                raise ProgramFileError(str(path), f"field 'stage_to_rank'[{i}]: rank "
                                       f"{_short(r)} is not in 0..{w - 1}")


def _check_overlap(path: Path, overlap: dict | None) -> None:
    try:
        Overlap.from_dict(overlap)
    except ValueError as exc:
        raise ProgramFileError(str(path), f"field 'overlap': {exc}") from None


def _check_period(path: Path, period: dict) -> None:
    if set(period) != {"microbatches", "steps"}:
        raise ProgramFileError(str(path), "field 'period' must hold exactly 'microbatches' "
                               "and 'steps'")
    for key in ("microbatches", "steps"):
        if not _is(period[key], int) or period[key] < 1:
            raise ProgramFileError(str(path), f"field 'period.{key}' must be a positive "
                                   f"integer, got {_short(period[key])}")
    if period["microbatches"] % period["steps"]:
        raise ProgramFileError(str(path), "field 'period': microbatches must be a multiple "
                               "of steps")


def _check_spec(path: Path, data: dict, check_hashes: bool) -> None:
    """The Spec is valid and the manifest's shape is the Spec's."""
    from schedc.spec import Spec  # the loader's only use of the Spec

    try:
        spec = Spec.from_dict(data["spec"]).validate()
        expected = {
            "world_size": spec.num_ranks, "num_stages": spec.stages,
            "num_pipelines": spec.num_pipelines, "synchronous": spec.flush,
            "stage_to_rank": [list(m) for m in spec.resolved_directions()],
        }
    except Exception as exc:  # noqa: BLE001 - any malformed spec is the file's fault
        raise ProgramFileError(str(path), f"field 'spec' is not a valid schedule: "
                               f"{exc}") from None
    for key, value in expected.items():
        if data[key] != value:
            raise ProgramFileError(str(path), f"field {key!r} is {_short(data[key])}, the "
                                   f"spec says {_short(value)}")
    if check_hashes and data["spec_hash"] != spec.hash():
        raise ProgramFileError(str(path), "field 'spec_hash' does not match field 'spec' "
                               f"(edited after compile; `schedc check --rehash {path.parent}` "
                               "re-verifies the set and records its hashes)")


# ---- rank files -------------------------------------------------------------------
def _program_from(path: Path, data: Any, rank: int, manifest: Manifest) -> RankProgram:
    if not isinstance(data, dict):
        raise ProgramFileError(str(path), "must hold a JSON object")
    if _require(path, data, "rank", int) != rank:
        raise ProgramFileError(str(path), f"field 'rank' is {data['rank']}, expected {rank}")
    if "format_version" in data and data["format_version"] != FORMAT_VERSION:
        got = _short(data["format_version"])
        raise ProgramFileError(str(path), f"field 'format_version': {got} is not supported "
                               f"(this schedc reads {FORMAT_VERSION})")
    unknown = sorted(set(data) - {"rank", "format_version", *SECTIONS})
    if unknown:
        raise ProgramFileError(str(path), f"field {unknown[0]!r} is unknown")
    for section in SECTIONS:
        seq = _require(path, data, section, list)
        for i, ins in enumerate(seq):
            problem = _instr_problem(ins, rank, manifest)
            if problem:
                op = ins.get("op") if isinstance(ins, dict) else None
                where = f"{section}[{i}]" + (f" ({op})" if isinstance(op, str) else "")
                raise ProgramFileError(str(path), f"{where}: {problem}")
    return RankProgram.from_dict(data)


def _instr_problem(ins: Any, rank: int, manifest: Manifest) -> str | None:
    """Why `ins` is not a well-formed instruction of `rank`, or None."""
    if not isinstance(ins, dict):
        return f"an instruction must be a JSON object, got {_short(ins)}"
    op = ins.get("op")
    if not isinstance(op, str):
        return "field 'op' is missing" if op is None else "field 'op' must be a string"
    row = TABLE.get(op)
    if row is None:
        return f"field 'op': unknown op {_short(op)}"
    required = row.required
    allowed = {"op", *row.fields}
    for name in required:
        if name not in ins:
            return f"field {name!r} is missing ({op} needs {', '.join(required)})"
    for name in ins:
        if name not in allowed:
            return f"field {name!r} is not a field of {op}"
    for name in ins:
        problem = _type_problem(name, ins[name])
        if problem:
            return problem
    return _range_problem(ins, rank, manifest)


def _type_problem(name: str, value: Any) -> str | None:
    kind = FIELDS[name].type if name in FIELDS else None
    if kind == "int" and not _is(value, int):
        return f"field {name!r} must be an integer, got {_short(value)}"
    if kind == "bool" and not isinstance(value, bool):
        return f"field {name!r} must be true or false, got {_short(value)}"
    if kind == "number" and (not _is(value, (int, float)) or not math.isfinite(value)):
        return f"field {name!r} must be a finite number, got {_short(value)}"
    return None


def _range_problem(ins: dict, rank: int, m: Manifest) -> str | None:
    if not 0 <= ins["stage"] < m.num_stages:
        return f"field 'stage': {ins['stage']} is not in 0..{m.num_stages - 1}"
    if not 0 <= ins["pipeline"] < m.num_pipelines:
        return f"field 'pipeline': {ins['pipeline']} is not in 0..{m.num_pipelines - 1}"
    for name in INT_FIELDS:
        low = FIELDS[name].low
        if low is not None and name in ins and ins[name] < low:
            return f"field {name!r} must be at least {low}, got {ins[name]}"
    if "peer" in ins and not (0 <= ins["peer"] < m.world_size and ins["peer"] != rank):
        return f"field 'peer': {ins['peer']} is not another rank in 0..{m.world_size - 1}"
    if "group" in ins:
        g = ins["group"]
        if not isinstance(g, list) or not g or not all(_is(r, int) for r in g):
            return f"field 'group' must be a non-empty list of ranks, got {_short(g)}"
        if g != sorted(set(g)) or not all(0 <= r < m.world_size for r in g) or rank not in g:
            return (f"field 'group' must list distinct ranks in 0..{m.world_size - 1} in "
                    f"order, this rank ({rank}) included, got {_short(g)}")
    return None
