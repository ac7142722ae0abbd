"""Mutating program directories, and the property every mutant must meet:
loading + verifying ends in success or a located `schedc.errors.UserError`."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from schedc.errors import ProgramFileError, UserError, VerifyError
from schedc.files import load_programs
from schedc.verify import verify

CORPUS = Path(__file__).parent / "corpus"
VALUES = [None, -1, 0, 1, 2, 3, 7, 10**20, -(10**20), 1.5, math.inf, math.nan, "", "x", "F",
          "STEP", [], [0], [1, 0], [0, 0], {}, {"op": "F"}, True, False]


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.json"))}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _paths(data, prefix=()):
    """Every (path) to a value in a JSON document."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _get(data, path):
    for k in path:
        data = data[k]
    return data


def mutate(files: dict[str, str], ops: list[tuple[int, int, int, int]]) -> dict[str, str]:
    """Apply mutation ops (kind, which file, where, value) to a snapshot."""
    names = sorted(files)
    docs = {n: json.loads(t) for n, t in files.items()}
    raw: dict[str, str] = {}
    for kind, fi, where, vi in ops:
        name = names[fi % len(names)]
        doc = docs[name]
        if kind <= 2:  # set / delete / add a field anywhere
            paths = [p for p in _paths(doc) if p]
            if not paths:
                continue
            path = paths[where % len(paths)]
            parent = _get(doc, path[:-1])
            if kind == 0:
                parent[path[-1]] = copy.deepcopy(VALUES[vi % len(VALUES)])  # no cycles
            elif kind == 1:
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[["peer", "mb", "stage", "group", "version", "zz"][vi % 6]] = \
                    copy.deepcopy(VALUES[vi % len(VALUES)])
        elif kind <= 6 and name != "manifest.json":  # instruction lists
            section = ("prologue", "body", "epilogue")[vi % 3]
            seq = doc.get(section) if isinstance(doc, dict) else None
            if not isinstance(seq, list) or not seq:
                continue
            i, j = where % len(seq), (where // 7 + vi) % len(seq)
            if kind == 3:
                del seq[i]
            elif kind == 4:
                seq.insert(j, seq[i])
            elif kind == 5:
                seq[i], seq[j] = seq[j], seq[i]
            else:
                seq.insert(j, seq.pop(i))
        elif kind == 7:  # bytes: truncate the file
            text = json.dumps(doc)
            raw[name] = text[: where % max(1, len(text))]
        elif kind == 8:  # drop a whole file
            raw[name] = None
    out = {}
    for n in names:
        if n in raw:
            if raw[n] is not None:
                out[n] = raw[n]
        else:
            out[n] = json.dumps(docs[n], allow_nan=True)
    return out


def check_directory(directory: Path) -> str:
    """Load and verify; 'ok', or the class of the UserError. Anything else raises."""
    try:
        manifest, programs = load_programs(directory, check_hashes=False)
        verify(manifest, programs)
    except ProgramFileError as exc:
        assert str(directory) in str(exc), exc  # names the file
        return "ProgramFileError"
    except VerifyError as exc:
        assert exc.render().startswith("schedc: verify error: ")
        return "VerifyError"
    except UserError:
        return "UserError"
    # Anything else -- a traceback -- propagates and fails the test.
    return "ok"
