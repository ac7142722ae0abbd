"""Write and read program directories (manifest.json + rank<r>.json).

Loading checks the format, every field's presence, and the sha256 of each
rank file against the manifest, so a hand edit is noticed (`schedc check`
re-verifies the edited programs). Every problem is a ProgramFileError naming
the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from schedc.errors import ProgramFileError
from schedc.program import FORMAT_VERSION, Manifest, RankProgram

MANIFEST = "manifest.json"


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode()


def _sha(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _atomic_write(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
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
    files = {}
    for prog in programs:
        blob = _dumps(prog.to_dict())
        name = f"rank{prog.rank}.json"
        _atomic_write(out / name, blob)
        files[name] = _sha(blob)
    data = manifest.to_dict()
    data["files"] = files
    _atomic_write(out / MANIFEST, _dumps(data))
    return out


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ProgramFileError(str(path), "missing") from None
    except OSError as exc:
        raise ProgramFileError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        return json.loads(blob), blob
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProgramFileError(str(path), f"not valid JSON: {exc}") from None


def load_programs(directory: str | os.PathLike, check_hashes: bool = True
                  ) -> tuple[Manifest, list[RankProgram]]:
    root = Path(directory)
    if not root.is_dir():
        raise ProgramFileError(str(root), "not a program directory")
    data, _ = _read_json(root / MANIFEST)
    manifest = _manifest_from(root / MANIFEST, data)
    programs = []
    for r in range(manifest.world_size):
        name = f"rank{r}.json"
        pdata, blob = _read_json(root / name)
        if check_hashes and manifest.files.get(name) != _sha(blob):
            raise ProgramFileError(str(root / name), "field 'files' of manifest.json: hash "
                                   "mismatch (the file changed after compile; run schedc "
                                   "check to re-verify it)")
        programs.append(_program_from(root / name, pdata, r))
    return manifest, programs


def _require(path: Path, data: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ProgramFileError(str(path), f"field {key!r} is missing")
    if not isinstance(data[key], kind):
        raise ProgramFileError(str(path), f"field {key!r} has the wrong type")
    return data[key]


def _manifest_from(path: Path, data: Any) -> Manifest:
    if _require(path, data, "format", str) != "schedc-programs":
        raise ProgramFileError(str(path), "field 'format' is not 'schedc-programs'")
    version = _require(path, data, "format_version", int)
    if version != FORMAT_VERSION:
        raise ProgramFileError(str(path), f"field 'format_version': {version} is not "
                               f"supported (this schedc reads {FORMAT_VERSION})")
    for key, kind in (("spec", dict), ("spec_hash", str), ("world_size", int),
                      ("num_stages", int), ("num_pipelines", int), ("stage_to_rank", list),
                      ("period", dict), ("synchronous", bool), ("files", dict)):
        _require(path, data, key, kind)
    try:
        return Manifest.from_dict(data)
    except (TypeError, KeyError, ValueError) as exc:
        raise ProgramFileError(str(path), f"malformed: {exc}") from None


def _program_from(path: Path, data: Any, rank: int) -> RankProgram:
    if _require(path, data, "rank", int) != rank:
        raise ProgramFileError(str(path), f"field 'rank' is {data['rank']}, expected {rank}")
    for section in ("prologue", "body", "epilogue"):
        for i, ins in enumerate(_require(path, data, section, list)):
            if not isinstance(ins, dict) or not isinstance(ins.get("op"), str):
                raise ProgramFileError(str(path), f"{section}[{i}]: field 'op' is missing")
    try:
        return RankProgram.from_dict(data)
    except TypeError as exc:
        raise ProgramFileError(str(path), f"malformed instruction: {exc}") from None
