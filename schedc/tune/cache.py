"""Compiled candidates, kept so that no Spec is compiled twice.

In memory for one tune; on disk with `--cache DIR`, across tunes: programs
depend on the Spec only, never on the costs or the micro-batch size, so a
second tune of another profile, batch or model reuses every compile. A cache
entry is a program directory (`schedc.files`, hashes checked on load) named by
the Spec's hash and a digest of the compiler's sources, or `refused.txt`
holding the compiler's reason. A different compiler never reads an old entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

from schedc import __version__
from schedc.errors import UserError
from schedc.files import load_programs, write_programs
from schedc.program import Manifest, RankProgram
from schedc.spec import Spec, SpecError

Programs = tuple[Manifest, tuple[RankProgram, ...]]
REFUSED = "refused.txt"


class Refused(UserError):
    """A cached refusal: the compiler's reason, as it said it."""


@cache
def compiler_digest() -> str:
    """The schedc version and the compiler's sources (everything but the
    command line, pictures, simulator and this package)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("cli", "viz", "simulate", "tune"):
            continue
        h.update("/".join(rel).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class CompileCache:
    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory: dict[str, Programs | Exception] = {}
        self.hits = self.misses = 0

    def key(self, spec: Spec) -> str:
        return f"{spec.hash().removeprefix('sha256:')[:24]}-{compiler_digest()}"

    def get(self, spec: Spec, compile_fn: Callable) -> Programs:
        """The programs of `spec`, compiled by compile_fn(spec) at most once."""
        key = self.key(spec)
        found = self.memory.get(key) or self._load(key)
        if found is None:
            self.misses += 1
            try:
                compiled = compile_fn(spec)
                found = (compiled.manifest, tuple(compiled.programs))
            except (SpecError, UserError) as exc:
                found = exc
            self._store(key, found)
        else:
            self.hits += 1
        self.memory[key] = found
        if isinstance(found, Exception):
            raise found
        return found

    def preload(self, spec: Spec, directory: Path) -> None:
        """Keep in memory the entry of `spec` that another cache wrote to `directory`."""
        found = self._load(self.key(spec), directory)
        if found is not None:
            self.memory[self.key(spec)] = found

    def _load(self, key: str, directory: Path | None = None) -> Programs | Exception | None:
        directory = directory or self.directory
        if directory is None:
            return None
        entry = directory / key
        if (entry / REFUSED).is_file():
            return Refused((entry / REFUSED).read_text().strip())
        if not (entry / "manifest.json").is_file():
            return None
        try:
            manifest, programs = load_programs(entry)
        except UserError:
            return None  # a damaged entry is compiled again
        return manifest, tuple(programs)

    def _store(self, key: str, found: Programs | Exception) -> None:
        if self.directory is None:
            return
        entry = self.directory / key
        if isinstance(found, Exception):
            entry.mkdir(parents=True, exist_ok=True)
            text = found.render() if isinstance(found, UserError) else str(found)
            (entry / REFUSED).write_text(text.removeprefix("schedc: error: ") + "\n")
        else:
            write_programs(entry, *found)
