"""The tune itself: evaluate every candidate, rank those within the caps.

    from schedc.tune import Query, load_measured, tune
    result = tune(Query(ranks=4, batch=32), load_measured("costs.json", 4), ["1f1b"])
    print(result.best.candidate.label())

Ranked by predicted throughput (highest first); ties by peak memory, then
max delay, max inconsistency and the label, so the order is deterministic.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from schedc.errors import UserError
from schedc.tune.cache import CompileCache
from schedc.tune.evaluate import Query, Row, evaluate
from schedc.tune.profile import Profile
from schedc.tune.space import Candidate, enumerate_space

DEFAULT_CHUNKS = (2, 4)


@dataclass
class Result:
    query: Query
    profile: Profile
    rows: list[Row]  # ranked candidates first, then the dropped ones in space order
    seconds: float = 0.0
    compiled: int = 0  # compiles run
    cached: int = 0  # programs (or refusals) found in the cache
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def best(self) -> Row | None:
        ranked = self.ranked
        return ranked[0] if ranked else None


def default_max_microbatches(ranks: int) -> int:
    """Enough for the synchronous bubble to fall to (p - 1) / (5p - 1) < 0.2."""
    return 4 * ranks


def tune(query: Query, profile: Profile, families: Sequence[str],
         max_microbatches: int | None = None, chunks: Sequence[int] = DEFAULT_CHUNKS,
         jobs: int = 1, cache: CompileCache | None = None, search: bool = False) -> Result:
    """Evaluate the space of `families`; `cache` (in memory by default) keeps the
    compiles, so writing the best one's programs afterwards compiles nothing;
    search=True also compiles candidates only the compiler's search builds."""
    check_query(query, profile)
    start = time.perf_counter()
    space = enumerate_space(families, query.ranks, query.replica_batch,
                            max_microbatches or default_max_microbatches(query.ranks),
                            chunks, profile.max_stages)
    if not space:
        raise UserError("no candidate: no family fits these ranks, batch and --families "
                        "(the micro-batches m must divide the batch per replica)")
    cache = cache if cache is not None else CompileCache()
    misses, hits = cache.misses, cache.hits
    rows, compiled, cached = _evaluate_all(space, query, profile, jobs, cache, search)
    ranked = sorted((r for r in rows if r.ok), key=_rank_key)
    dropped = [r for r in rows if not r.ok]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return Result(query, profile, ranked + dropped, time.perf_counter() - start,
                  compiled - misses, cached - hits, counts)


def _mark_duplicates(rows: list[Row]) -> None:
    """A candidate whose programs equal an earlier one's (look-ahead where every
    delay is 0, so nothing is extrapolated) is listed once."""
    first: dict[str, Row] = {}
    for r in rows:
        if not r.programs_digest:
            continue
        if r.programs_digest in first and r.ok:
            r.status = "duplicate"
            r.reason = f"the same programs as {first[r.programs_digest].candidate.label()}"
        first.setdefault(r.programs_digest, r)


def check_query(query: Query, profile: Profile) -> None:
    if query.ranks < 1:
        raise UserError(f"--ranks must be at least 1, got {query.ranks}")
    if query.dp < 1:
        raise UserError(f"--dp must be at least 1, got {query.dp}")
    if query.batch < 1:
        raise UserError(f"--global-batch must be at least 1, got {query.batch}")
    if query.batch % query.dp:
        raise UserError(f"--global-batch {query.batch} must be a multiple of --dp {query.dp}")
    if profile.max_stages is not None and query.ranks > profile.max_stages:
        raise UserError(f"--ranks {query.ranks}: the model has {profile.max_stages} layers, "
                        "at most one stage per layer")
    base = profile.base
    if query.memory is not None and base.weight_bytes is None \
            and base.activation_bytes is None and base.stored_activation_bytes is None \
            and not any(profile.static_bytes):
        raise UserError(f"{profile.origin}: the profile gives no sizes (activation_bytes, "
                        "weight_bytes_per_stage): --memory cannot be checked")


def _rank_key(row: Row) -> tuple:
    # Throughputs equal but for rounding (the same steady state reached by other
    # sums of the same op times) tie, and the memory decides.
    return (-_sig(row.throughput or 0.0), _sig(row.peak_memory or 0.0), row.max_delay or 0,
            row.max_inconsistency or 0, row.candidate.label())


def _sig(x: float) -> float:
    return float(f"{x:.9g}")


def _evaluate_all(space: list[Candidate], query: Query, profile: Profile, jobs: int,
                  cache: CompileCache, search: bool) -> tuple[list[Row], int, int]:
    """Rows in space order, and the cache's misses and hits (counted from its start)."""
    if jobs <= 1 or len(space) < 2:
        rows = [evaluate(c, query, profile, cache, search) for c in space]
        _mark_duplicates(rows)
        return rows, cache.misses, cache.hits
    # Interleaved chunks: neighbours in the space cost alike, so each worker gets a mix.
    parts = [space[i::jobs] for i in range(jobs)]
    with tempfile.TemporaryDirectory(prefix="schedc-tune-") as tmp:
        # Workers share programs through a directory (the user's cache, or one for
        # this tune), from which the best is read back: nothing is compiled twice.
        shared = cache.directory or Path(tmp)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(_evaluate_chunk, parts, [query] * jobs, [profile] * jobs,
                                 [shared] * jobs, [search] * jobs))
        by_candidate = {row.candidate: row for rows, _, _ in done for row in rows}
        rows = [by_candidate[c] for c in space]
        _mark_duplicates(rows)
        ranked = [r for r in rows if r.ok]
        if ranked:
            best = min(ranked, key=_rank_key)
            cache.preload(best.candidate.spec(query.ranks), shared)
    return (rows, cache.misses + sum(n for _, n, _ in done),
            cache.hits + sum(n for _, _, n in done))


def _evaluate_chunk(space: list[Candidate], query: Query, profile: Profile,
                    cache_dir: str | Path | None, search: bool) -> tuple[list[Row], int, int]:
    cache = CompileCache(cache_dir)
    rows = [evaluate(c, query, profile, cache, search) for c in space]
    return rows, cache.misses, cache.hits
