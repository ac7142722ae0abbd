"""Where programs come from: a program directory, a preset, a .sched file or
a PyTorch compute-only CSV. Each becomes (name, Manifest, programs).

Preset form: `preset:NAME[:STAGES[:MICROBATCHES]]`, e.g. `preset:1f1b:4:8`.
The compiler modules are imported when needed, so that simulating a program
directory never pays for (or depends on) the compiler front end.
"""

from __future__ import annotations

from pathlib import Path

from schedc.errors import UserError
from schedc.program import Manifest, RankProgram

Loaded = tuple[str, Manifest, list[RankProgram]]


def load_source(text: str) -> Loaded:
    """Programs for one command-line argument naming a schedule."""
    if text.startswith("preset:"):
        return _from_preset(text)
    path = Path(text)
    if path.is_dir():
        return _from_dir(path)
    if path.suffix == ".csv":
        from schedc.simulate.compute_only import load_csv

        manifest, programs = load_csv(path)
        return path.stem, manifest, programs
    if path.suffix == ".sched":
        return _from_sched(path)
    if not path.exists():
        raise UserError(f"{text}: no such directory or file (or use preset:NAME:STAGES:MBS)")
    raise UserError(f"{text}: expected a program directory, a .sched file, a .csv "
                    "compute-only export, or preset:NAME:STAGES:MBS")


def load_dir(path: str | Path) -> tuple[Manifest, list[RankProgram]]:
    from schedc.files import load_programs

    if not Path(path).is_dir():
        raise UserError(f"{path}: not a program directory (run `schedc compile` first)")
    return load_programs(path)


def _from_dir(path: Path) -> Loaded:
    manifest, programs = load_dir(path)
    name = str(manifest.spec.get("name") or path.name) if manifest.spec else path.name
    return name, manifest, list(programs)


def _compile(spec) -> tuple[Manifest, list[RankProgram]]:
    from schedc.compiler import compile_spec

    compiled = compile_spec(spec)
    return compiled.manifest, list(compiled.programs)


def _from_preset(text: str) -> Loaded:
    from schedc.presets import preset_spec

    parts = text.split(":")[1:]
    if not parts or len(parts) > 3 or not parts[0]:
        raise UserError(f"{text}: expected preset:NAME[:STAGES[:MICROBATCHES]]")
    overrides = {}
    for key, value in zip(("stages", "microbatches"), parts[1:], strict=False):
        if not value.isdigit():
            raise UserError(f"{text}: {key} must be a positive integer, got {value!r}")
        overrides[key] = int(value)
    try:
        spec = preset_spec(parts[0], **overrides)
        return text.removeprefix("preset:"), *_compile(spec)
    except ValueError as exc:  # SpecError
        raise UserError(f"{text}: {exc}") from None


def _from_sched(path: Path) -> Loaded:
    from schedc.dsl import parse_file

    spec = parse_file(path)
    return spec.name or path.stem, *_compile(spec)
