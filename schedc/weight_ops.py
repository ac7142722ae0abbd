"""The version check's rules for the ops that change a stage's weights
(schedc.versions): a gradient added in its step's batch, once; a STEP after
its batch is in (and all-reduced where the stage is replicated); stash
slots, look-ahead weights and the sparse synchronisation of data parallelism;
a SWAP to weights that exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schedc.versions import _Replica


class WeightOps:
    """schedc.versions._RankReplay's handlers of the weight ops (`_op_<OP>`):
    they read its manifest, Spec, micro-batches per step (`m`) and table, and
    fail with its `fail`."""

    def _op_ACC(self, ins, rep: _Replica, mb, v) -> None:
        self._check_needs(ins, rep, mb)
        batch = mb // self.m
        if batch != rep.current:
            raise self.fail(f"adds the gradient of micro-batch {mb} (step {batch + 1}) "
                            f"while stage {ins.stage} is at version {rep.current}")
        if mb in rep.accumulated:
            raise self.fail(f"adds micro-batch {mb} twice")
        rep.accumulated.add(mb)
        cols, i = self._columns(ins, mb)
        cols.applied[i] = batch

    def _op_ALLREDUCE(self, ins, rep: _Replica, mb, v) -> None:
        self._check_batch_in(ins, rep)
        rep.reduced = True

    def _check_batch_in(self, ins, rep: _Replica) -> None:
        n = self.manifest.num_pipelines
        first = rep.current * self.m
        mine = range(first + (ins.pipeline - first) % n, first + self.m, n)  # mb % n == pipeline
        if not rep.accumulated.issuperset(mine):
            missing = next(mb for mb in mine if mb not in rep.accumulated)
            raise self.fail(f"step {rep.current + 1} of stage {ins.stage} before the gradient "
                            f"of micro-batch {missing} was added")

    def _op_STEP(self, ins, rep: _Replica, mb, v) -> None:
        if v != rep.current + 1:
            raise self.fail(f"STEP to version {v} from version {rep.current}")
        if ins.count != self.m:
            raise self.fail(f"STEP averages {ins.count} gradients; its batch has {self.m}")
        self._check_batch_in(ins, rep)
        replicated = len({m[ins.stage] for m in self.maps}) > 1
        if replicated and not rep.reduced:
            raise self.fail("STEP of a replicated stage without an ALLREDUCE first")
        rep.current += 1
        rep.accumulated.clear()
        rep.reduced = False
        rep.lookahead = None
        rep.active = (rep.current, False)

    def _op_STASH(self, ins, rep: _Replica, mb, v) -> None:
        if v != rep.current:
            raise self.fail(f"STASH of version {v} while current is {rep.current}")
        rep.stash.add(v)
        self._peak("copy_peaks", (ins.pipeline, ins.stage), rep.copies())
        self._peak("version_peaks", (ins.pipeline, ins.stage), 1 + len(rep.stash))

    def _op_RELEASE(self, ins, rep: _Replica, mb, v) -> None:
        if v not in rep.stash:
            raise self.fail(f"RELEASE of version {v}, which is not stashed")
        rep.stash.discard(v)
        if rep.active == (v, False):
            rep.active = None

    def _op_LOOKAHEAD(self, ins, rep: _Replica, mb, v) -> None:
        if v != rep.current:
            raise self.fail(f"LOOKAHEAD from version {v} while current is "
                            f"{rep.current}")
        rep.lookahead = v
        self._peak("copy_peaks", (ins.pipeline, ins.stage), rep.copies())

    def _op_SPARSE_SYNC(self, ins, rep: _Replica, mb, v) -> None:
        spec = self.spec
        if spec.dp_mode != "async-sparse":
            raise self.fail("SPARSE_SYNC in a schedule whose dp_mode is not async-sparse")
        if v != rep.current or v % spec.dp_period:
            raise self.fail(f"SPARSE_SYNC at version {v}: it follows the STEP to a "
                            f"multiple of dp_period ({spec.dp_period}); current is "
                            f"{rep.current}")
        key = (ins.pipeline, ins.stage)
        self.table.sparse_syncs[key] = 1 + self.table.sparse_syncs.get(key, 0)

    def _op_SWAP(self, ins, rep: _Replica, mb, v) -> None:
        if ins.lookahead:
            if rep.lookahead != v:
                raise self.fail(f"SWAP to look-ahead weights of version {v}, "
                                "which were not produced")
        elif v != rep.current and v not in rep.stash:
            raise self.fail(f"SWAP to version {v}, neither current "
                            f"({rep.current}) nor stashed")
        rep.active = (v, bool(ins.lookahead))
