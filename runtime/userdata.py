"""A run's data: the hooks behind `data=` (Python API) and `--data` (command line).

- A function `data(j, seed) -> (inputs, targets)` or `(inputs, targets, side)`
  giving micro-batch j, deterministically (the same on every rank, transport
  and schedule). `inputs` and `targets` are tensors or tuples / lists / dicts
  of tensors, of any dtype; `side` is a dict of tensors every stage receives
  as keyword arguments, read from its own copy of the data (runtime/boundary.py).
  With `--dp D`, replica d's micro-batch j is `data(j * D + d, seed)`.
  On the command line: `--data module:function`.
- A plain iterable of such tuples, where determinism is not needed: item
  j * D + d is replica d's micro-batch j. Every process iterates its own copy,
  so the stages agree only if the iterable yields the same items everywhere.
- A token file in nanoGPT's format (`--data FILE.bin`: a flat array of uint16
  token ids, or uint32 with `--token-dtype uint32`), read through
  `numpy.memmap`: windows of seq_len + 1 tokens drawn exactly like the text
  corpus's (runtime/data.py), the last 5% held out.
- A text file (byte-level), or nothing: the Python standard library's sources.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from schedc.errors import UserError

from .boundary import describe, leaves_of
from .data import Batch, Batches, load_corpus

__all__ = ["DataError", "FunctionData", "IterableData", "TokenFile", "resolve_data", "units"]

DataFactory = Callable[[int, int], object]  # (dp_rank, dp_size) -> data source with .get(mb)
_CACHE = 64  # micro-batches kept per process (stages on one rank share them)


class DataError(RuntimeError):
    """The user's data failed or returned the wrong structure; names the micro-batch."""


def as_batch(value: object, where: str) -> Batch:
    """Check one micro-batch's structure: (inputs, targets[, side])."""
    if isinstance(value, Batch):
        parts = (value.inputs, value.targets, value.side)
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        parts = (*value, None) if len(value) == 2 else tuple(value)
    else:
        raise DataError(f"{where} returned {type(value).__name__}: expected (inputs, targets) "
                        "or (inputs, targets, side)")
    inputs, targets, side = parts
    for name, tree in (("inputs", inputs), ("targets", targets)):
        flat = leaves_of(tree)
        if not flat or not all(isinstance(t, torch.Tensor) for t in flat):
            raise DataError(f"{where}: {name} {describe(tree)} must be a tensor or a tuple / "
                            "list / dict of tensors")
    if side is not None and not (isinstance(side, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in side.items())):
        raise DataError(f"{where}: side inputs must be a dict of name -> tensor, not "
                        f"{type(side).__name__}")
    return Batch(inputs, targets, side or None)


def _shape_of(batch: Batch) -> str:
    side = "" if not batch.side else f", side {describe(batch.side)}"
    return f"inputs {describe(batch.inputs)}, targets {describe(batch.targets)}{side}"


class _Checked:
    """Caches micro-batches and checks each has micro-batch 0's structure."""

    def __init__(self) -> None:
        self._cache: OrderedDict[int, Batch] = OrderedDict()
        self._form: str | None = None

    def get(self, mb: int) -> Batch:
        batch = self._cache.get(mb)
        if batch is None:
            batch = as_batch(self._load(mb), self._where(mb))
            form = _shape_of(batch)
            if self._form is None:
                self._form = form
            elif form != self._form:
                raise DataError(f"{self._where(mb)} gives {form}; micro-batch 0 gave "
                                f"{self._form} (shapes and dtypes are agreed at start-up)")
            self._cache[mb] = batch
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return batch

    def _load(self, mb: int) -> object:
        raise NotImplementedError

    def _where(self, mb: int) -> str:
        return f"micro-batch {mb}"


class FunctionData(_Checked):
    """`fn(j, seed)`: replica d's micro-batch mb is j = mb * dp_size + d."""

    def __init__(self, fn: Callable, seed: int, dp_rank: int = 0, dp_size: int = 1) -> None:
        super().__init__()
        self.fn, self.seed, self.dp_rank, self.dp_size = fn, seed, dp_rank, dp_size

    def _index(self, mb: int) -> int:
        return mb * self.dp_size + self.dp_rank

    def _where(self, mb: int) -> str:
        name = getattr(self.fn, "__name__", "data")
        return f"data function {name}({self._index(mb)}, {self.seed}) for micro-batch {mb}"

    def _load(self, mb: int) -> object:
        try:
            return self.fn(self._index(mb), self.seed)
        except Exception as exc:  # noqa: BLE001 - the user's function, whatever it raises
            raise DataError(f"{self._where(mb)} raised {type(exc).__name__}: {exc}") from exc


class IterableData(_Checked):
    """Items of an iterable, read once, in order: item mb * dp_size + d is
    replica d's micro-batch mb."""

    WINDOW = 1024  # items kept behind the newest, for stages that read later

    def __init__(self, items: Iterable, dp_rank: int = 0, dp_size: int = 1) -> None:
        super().__init__()
        self._it = iter(items)
        self._read = 0
        self._held: dict[int, object] = {}
        self.dp_rank, self.dp_size = dp_rank, dp_size

    def _load(self, mb: int) -> object:
        j = mb * self.dp_size + self.dp_rank
        while self._read <= j:
            try:
                self._held[self._read] = next(self._it)
            except StopIteration:
                raise DataError(f"the data ran out at item {self._read} (micro-batch {mb}): "
                                "give an iterable long enough for every step") from None
            except Exception as exc:  # noqa: BLE001 - the user's iterator
                raise DataError(f"the data's iterator raised {type(exc).__name__}: {exc} "
                                f"reading micro-batch {mb}") from exc
            self._read += 1
            self._held.pop(self._read - self.WINDOW, None)
        if j not in self._held:
            raise DataError(f"micro-batch {mb} is no longer held (an iterable is read once, "
                            "in order)")
        return self._held[j]


class TokenFile(Batches):
    """nanoGPT's token files: a flat array of token ids (`numpy.memmap`)."""

    def __init__(self, path: str | Path, micro_batch_size: int, seq_len: int, seed: int,
                 dp_rank: int = 0, dp_size: int = 1, dtype: str = "uint16",
                 split: str = "train") -> None:
        import numpy as np

        tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
        super().__init__(tokens, micro_batch_size, seq_len, seed, "causal", dp_rank, dp_size,
                         split=split)

    def _take(self, idx: torch.Tensor) -> torch.Tensor:
        import numpy as np

        return torch.from_numpy(np.asarray(self.tokens[idx.numpy()], dtype=np.int64))


def _import(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--data {spec}: cannot import ({exc})") from None


def resolve_data(data: object, *, micro_batch_size: int, seq_len: int, seed: int,
                 objective: str = "causal", mask_token: int = 256,
                 token_dtype: str = "uint16") -> DataFactory:
    """A factory (dp_rank, dp_size) -> data source, from what the user gave.
    It makes one source per replica, so an iterator read at start-up (to agree
    on shapes) is not read twice."""
    made: dict[tuple[int, int], object] = {}
    make = _maker(data, micro_batch_size, seq_len, seed, objective, mask_token, token_dtype)

    def factory(dp_rank: int, dp_size: int) -> object:
        if (dp_rank, dp_size) not in made:
            made[(dp_rank, dp_size)] = make(dp_rank, dp_size)
        return made[(dp_rank, dp_size)]

    return factory


def _maker(data: object, b: int, t: int, seed: int, objective: str, mask_token: int,
           token_dtype: str) -> DataFactory:
    if data is None or isinstance(data, (str, Path)):
        text = None if data is None else str(data)
        if text is not None and not Path(text).exists():
            if ":" not in text:
                raise UserError(f"--data {text}: no such file (a text file, a .bin token "
                                "file, or module:function)")
            data = _import(text)
        elif text is not None and text.endswith(".bin"):
            return _token_file(text, b, t, seed, token_dtype)
        else:
            try:
                corpus = load_corpus(text)
            except (OSError, ValueError) as exc:
                raise UserError(f"--data {text}: {exc}") from None
            return lambda d, n: Batches(corpus, b, t, seed, objective, d, n, mask_token)
    if hasattr(data, "get") and not isinstance(data, dict):
        return lambda d, n: data  # a data source already (e.g. Batches)
    if callable(data):
        return lambda d, n: FunctionData(data, seed, d, n)
    if isinstance(data, Iterable):
        return lambda d, n: IterableData(data, d, n)
    raise UserError(f"data: {type(data).__name__} is neither a function data(j, seed), an "
                    "iterable, nor a file")


def _token_file(path: str, b: int, t: int, seed: int, dtype: str) -> DataFactory:
    try:
        TokenFile(path, b, t, seed, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UserError(f"--data {path}: not a usable token file ({dtype}): {exc}") from None
    return lambda d, n: TokenFile(path, b, t, seed, d, n, dtype)


def units(batch: Batch) -> tuple[str, int]:
    """("tokens", n) when the inputs are token ids [b, t, ...], else ("samples", b)."""
    first = leaves_of(batch.inputs)[0]
    if not first.dtype.is_floating_point and first.dtype != torch.bool and first.dim() >= 2:
        return "tokens", first.numel()
    return "samples", int(first.shape[0]) if first.dim() else 1
