"""Executes one rank's instruction stream, exactly as compiled.

The interpreter knows instructions, not schedules: it dispatches each
instruction of the (unrolled) stream to the rank's stage replicas and its
transport, and checks every weight version a compute op reads against the
instruction. `run(stream)` is a generator that yields the instruction it is
blocked on when the transport answers "not yet" (in-process transport only);
under the distributed transport it never yields.

Local state, per (pipeline, stage, micro-batch):
- `act_in`: the input of the next F (received, or handed over by F of the
  previous stage on this rank -- no instruction moves it);
- `act_out`: F's output waiting for SEND_ACT;
- `saved`: what the backward needs (input leaf, output or loss, and for a
  split backward the output gradient between I and W);
- `grad_in`: the output gradient of the next B/I (received, or local);
- `grad_out`: the input gradient waiting for SEND_GRAD.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import torch

from schedc.instructions import COLLECTIVE_OPS
from schedc.program import COMM_OPS, SEND_OPS, Instr

from . import faults
from .boundary import StageIO, call_stage, detach, to_device
from .split_backward import WeightWork, backward_input, backward_weight
from .stage import StageReplica
from .transport import BatchError, Transport

Key = tuple[int, int, int]  # (pipeline, stage, mb)


class ExecutionError(RuntimeError):
    """An instruction failed; names the rank, the instruction index and the instruction."""

    def __init__(self, rank: int, index: int, instr: Instr, reason: str) -> None:
        super().__init__(f"rank {rank}, instruction {index} ({instr.label()}): {reason}")
        self.rank = rank
        self.index = index
        self.instr = instr
        self.reason = reason


@dataclass
class Saved:
    x: object  # the input: a tensor or tree; leaves that carry a gradient require grad
    out: object  # output (tensor or tree), or the loss at the last stage
    grad: list[torch.Tensor] | None = None  # output gradients, kept from I for W
    work: WeightWork | None = None  # what I kept for W (split_backward)
    done: bool = False  # I ran the whole backward: W has nothing left to do


@dataclass(frozen=True)
class InterpreterConfig:
    """How one rank's interpreter runs; made once by `runtime/wiring.py`."""

    rank: int
    num_stages: int
    dp_size: int = 1  # pipeline replicas (dp_mode sync: STEP sums gradients over them)
    timing: bool = False  # time every instruction (--trace, --costs-out)
    on_nan: str = faults.STOP
    step_microbatches: int = 1  # micro-batches per optimizer step (fault messages)
    body_len: int = 0  # --on-nan skip: STEPs are settled at body ends
    inject: faults.Injection = faults.NO_INJECTION  # resolved at start-up
    # The manifest's overlap rule (schedc/overlap.py): post the next batch's receives
    # as soon as a batch is done (the transport keeps K batches posted).
    early_receives: bool = False


@dataclass
class Record:
    """What the rank did: versions read, losses, timings."""

    reads: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    # (op, pipeline, stage, mb, version read)
    losses: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (mb, loss)
    events: list[tuple[str, str, int, float, float]] = field(default_factory=list)
    # (op, label, stage, start s, duration s) when timing is on
    cpu: list[tuple[float, float]] = field(default_factory=list)
    # per event: (thread CPU time at its start, its thread CPU time), s


class Interpreter:
    def __init__(
        self, cfg: InterpreterConfig, replicas: dict[tuple[int, int], StageReplica],
        transport: Transport, batches, loss_fn: Callable, io: StageIO, dp_sparse=None,
    ) -> None:
        """`batches`: the data (`.get(mb)` -> Batch); `io`: the stage boundaries;
        `dp_sparse`: the async-sparse DP state of a `--dp` run (runtime/dp_sparse.py)."""
        self.rank = cfg.rank
        self.replicas = replicas  # (pipeline, stage) -> replica
        self.transport = transport
        self.batches = batches
        self.loss_fn = loss_fn
        self.io = io
        self.last = cfg.num_stages - 1
        self.dp_size = cfg.dp_size
        self.timing = cfg.timing
        self.inject = cfg.inject
        self.record = Record()
        self.executed = 0  # instructions completed (the cooperative driver's progress)
        self.act_in: dict[Key, torch.Tensor] = {}
        self.act_out: dict[Key, torch.Tensor] = {}
        self.grad_in: dict[Key, torch.Tensor] = {}
        self.grad_out: dict[Key, torch.Tensor] = {}
        self.saved: dict[Key, Saved] = {}
        self._fused_lookahead: Instr | None = None
        self._stream: list[Instr] = []  # the piece being run, and the index in it
        self._index = 0
        self._fused_stash: Instr | None = None  # a STASH written by the STEP that follows
        # Numerical faults (runtime/faults.py): per replica, non-finite values since its STEP.
        self.on_nan = cfg.on_nan
        self.m = max(1, cfg.step_microbatches)  # micro-batches per optimizer step
        self.body_len = cfg.body_len  # skip policy: STEPs are settled at body ends
        self.poison = {key: faults.Poison() for key in replicas}
        self._deferred: list[tuple[Instr, Instr | None]] = []
        self.skipped: list[int] = []  # versions whose step was skipped (--on-nan skip)
        self.posted = 0  # batches posted (the cooperative driver's progress, with executed)
        self.early_receives = cfg.early_receives
        self.dp_sparse = dp_sparse  # dp_sparse.SparseDP of an async-sparse run with --dp > 1
        self._sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    # ---- driving --------------------------------------------------------------
    def progress(self) -> int:
        """Grows whenever the rank does something (the cooperative driver's check)."""
        return self.executed + self.posted

    def run(self, stream: list[Instr]) -> Generator[Instr, None, None]:
        n, index = len(stream), 0
        boundary = self.body_len if self.body_len else n + 1
        while index < n:
            if index >= boundary:
                boundary += self.body_len
                if self._deferred:
                    yield from self._settle(index - 1, stream[index - 1])
            instr = stream[index]
            if instr.op in COMM_OPS:  # a maximal run of sends/receives: one batch
                end = index
                while end < n and stream[end].op in COMM_OPS:
                    end += 1
                yield from self._batch(stream, index, end)
                if self.early_receives:
                    self._post_ahead(stream, end)
                index = end
                continue
            nxt = stream[index + 1] if index + 1 < n else None
            self._stream, self._index = stream, index
            start = self._start() if self.timing else 0.0
            try:
                while not self._execute(instr, nxt):
                    yield instr  # blocked: let another rank run
            except ExecutionError:
                raise
            except Exception as exc:  # name the instruction, whatever went wrong
                raise ExecutionError(self.rank, index, instr, f"{type(exc).__name__}: {exc}") \
                    from exc
            if self.timing:
                self._timed(instr.op, instr.label(), instr.stage or 0, start)
            self.executed += 1
            index += 1
        if self._deferred:
            yield from self._settle(n - 1, stream[n - 1])

    def drain(self) -> None:
        """At a drain point: complete every exchange in flight."""
        if self.dp_sparse is not None:
            self.dp_sparse.flush(self.replicas)
        self.transport.drain()

    def _start(self) -> float:
        """A timed instruction starts: its wall-clock start (and its thread CPU time's)."""
        self._cpu_start = time.thread_time()
        return time.perf_counter()

    def _timed(self, op: str, label: str, stage: int, start: float) -> None:
        if self.timing:
            self._sync()
            self.record.events.append((op, label, stage, start, time.perf_counter() - start))
            self.record.cpu.append((self._cpu_start, time.thread_time() - self._cpu_start))

    def _batch(self, stream: list[Instr], begin: int, end: int
               ) -> Generator[Instr, None, None]:
        """Post stream[begin:end] at once, wait for all of it (docs/programs.md)."""
        batch = stream[begin:end]
        start = self._start() if self.timing else 0.0
        pos = 0
        try:
            tensors = []
            for ins in batch:
                tensors.append(self._outgoing(ins) if ins.op in SEND_OPS else None)
                pos += 1
            pos = 0
            handle = self.transport.post(batch, tensors)
            self.posted += 1
            while (got := self.transport.wait(handle)) is None:
                pending = getattr(self.transport, "pending", None)
                yield batch[pending(handle) if pending else 0]
            for ins, t in zip(batch, got, strict=True):
                if t is not None:
                    store = self.act_in if ins.op == "RECV_ACT" else self.grad_in
                    store[self._key(ins)] = t
        except BatchError as exc:
            raise ExecutionError(self.rank, begin + exc.pos, batch[exc.pos], str(exc)) from None
        except Exception as exc:
            raise ExecutionError(self.rank, begin + pos, batch[pos],
                                 f"{type(exc).__name__}: {exc}") from exc
        if self.timing:  # (the label is formatted only when it is recorded)
            self._timed("COMM", " + ".join(i.label() for i in batch), batch[0].stage or 0,
                        start)
        self.executed += len(batch)

    def _post_ahead(self, stream: list[Instr], index: int) -> None:
        """Post the receives of the next batch after `index` now, unless an
        ALLREDUCE or the end of the stream comes first (schedc/overlap.py)."""
        n = len(stream)
        while index < n and stream[index].op not in COMM_OPS:
            if stream[index].op in COLLECTIVE_OPS:
                return
            index += 1
        end = index
        while end < n and stream[end].op in COMM_OPS:
            end += 1
        batch = stream[index:end]
        if all(ins.op in SEND_OPS for ins in batch):
            return
        try:
            self.transport.prepost(batch)
        except BatchError as exc:
            raise ExecutionError(self.rank, index + exc.pos, batch[exc.pos], str(exc)) from None
        except Exception as exc:
            raise ExecutionError(self.rank, index, batch[0], f"{type(exc).__name__}: {exc}") \
                from exc

    def _settle(self, index: int, instr: Instr) -> Generator[Instr, None, None]:
        """--on-nan skip: every process votes on the deferred STEPs of this
        step; all of them run, or all are skipped."""
        deferred, self._deferred = self._deferred, []
        version = deferred[0][0].version
        bad = None
        try:
            for step, _ in deferred:
                found = self.poison[(step.pipeline or 0, step.stage)].first_bad(
                    self._replica(step))
                if found and bad is None:
                    bad = (step, *found)
            while (skip := self.transport.agree(version, bad is not None)) is None:
                yield instr
            for step, nxt in deferred:
                replica = self._replica(step)
                self.poison[(step.pipeline or 0, step.stage)].clear()
                if skip:
                    replica.skip_step(step.version)
                else:
                    self._step(step, nxt)
        except ExecutionError:
            raise
        except Exception as exc:
            raise ExecutionError(self.rank, index, instr, f"{type(exc).__name__}: {exc}") \
                from exc
        if skip:
            self.skipped.append(version)

    def run_to_end(self, stream: list[Instr]) -> None:
        """Run a stream whose transport never answers "not yet"."""
        for instr in self.run(stream):
            raise RuntimeError(f"rank {self.rank}: transport would block at {instr.label()}")

    def leftovers(self) -> list[str]:
        """State that should be empty at a drain point (tests, checkpoints)."""
        out = []
        for name in ("act_in", "act_out", "grad_in", "grad_out", "saved"):
            if getattr(self, name):
                out.append(f"{name}: {sorted(getattr(self, name))}")
        return out

    # ---- dispatch ---------------------------------------------------------------
    def _execute(self, instr: Instr, nxt: Instr | None) -> bool:
        """Run one instruction; False when the transport says "not yet"."""
        op = instr.op
        if op == "ALLREDUCE":
            return self.transport.allreduce(instr, self._replica(instr).grad_sum())
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown op {op!r}")
        if op in ("STEP", "STASH"):
            handler(instr, nxt)
        else:
            handler(instr)
        return True

    def _replica(self, instr: Instr) -> StageReplica:
        key = (instr.pipeline or 0, instr.stage)
        if key not in self.replicas:
            raise ValueError(f"this rank holds no replica of stage {instr.stage} "
                             f"of pipeline {key[0]}")
        return self.replicas[key]

    @staticmethod
    def _key(instr: Instr) -> Key:
        return (instr.pipeline or 0, instr.stage, instr.mb)

    def _read(self, instr: Instr) -> StageReplica:
        replica = self._replica(instr)
        got = replica.check_read(instr.version, bool(instr.lookahead))
        self.record.reads.append((instr.op, instr.pipeline or 0, instr.stage, instr.mb, got))
        return replica

    # ---- compute ----------------------------------------------------------------
    def _op_F(self, instr: Instr) -> None:
        replica = self._read(instr)
        p, s, mb = self._key(instr)
        device = replica.current.device
        batch = self.batches.get(mb) if s in (0, self.last) or self.io.side else None
        if s == 0:
            x = to_device(batch.inputs, device)  # e.g. [b, t] tokens
        else:
            x = self.io.input(s, self._take(self.act_in, (p, s, mb), "input activation"))
        side = to_device(batch.side, device) if self.io.side else None
        with replica.weights_by_reference():
            out = call_stage(replica.module, x, side)
            if s == self.last:
                out = self.loss_fn(out, to_device(batch.targets, device))
        if s == self.last:
            loss = out.detach()
            if self.inject.at("nan-loss", mb):
                loss = torch.full_like(loss, float("nan"))
            if loss.is_cuda:  # no host sync per micro-batch: checked and reported at STEP
                self.poison[(p, s)].device_losses.append((mb, loss))
            else:
                if not faults.loss_is_finite(loss):
                    if self.on_nan == faults.STOP:
                        raise faults.NumericalFault(
                            faults.fault_message("loss", mb, s, p, self.m))
                    self.poison[(p, s)].losses.append(mb)
            self.record.losses.append((mb, loss))
        elif (p, s + 1) in self.replicas:
            self.act_in[(p, s + 1, mb)] = detach(out)  # local hand-over
        else:
            self.act_out[(p, s, mb)] = detach(out)
        self.saved[(p, s, mb)] = Saved(x, out)

    def _output_grad(self, key: Key) -> list[torch.Tensor] | None:
        if key[1] == self.last:
            return None  # the loss: autograd seeds it with 1
        return self._take(self.grad_in, key, "output gradient")

    def _hand_input_grad(self, key: Key, x: object) -> None:
        p, s, mb = key
        if s == 0:
            return
        grads = self.io.input_grads(s, x)
        if (p, s - 1) in self.replicas:
            self.grad_in[(p, s - 1, mb)] = grads  # local hand-over
        else:
            self.grad_out[key] = grads

    def _op_B(self, instr: Instr) -> None:
        replica = self._read(instr)
        key = self._key(instr)
        saved = self._take(self.saved, key, "forward state")
        grad = self._output_grad(key)
        replica.bind_grad(instr.mb, self._acc_next(instr, replica))
        inputs = replica.params + self.io.grad_inputs(key[1], saved.x)
        if inputs:
            torch.autograd.backward(*self.io.roots(key[1], saved.out, grad), inputs=inputs)
        self._hand_input_grad(key, saved.x)

    def _op_I(self, instr: Instr) -> None:
        replica = self._read(instr)
        key = self._key(instr)
        saved = self.saved.get(key)
        if saved is None:
            raise RuntimeError("no forward state for this micro-batch")
        grad = self._output_grad(key)
        roots, grads = self.io.roots(key[1], saved.out, grad)
        inputs = self.io.grad_inputs(key[1], saved.x)
        if not inputs:  # no input gradient (stage 0): I has nothing of its own to do
            if replica.params and self._w_reads_as(instr):
                # The whole backward here, as a B: the weight gradient is the one W
                # would compute (same version), in mb's buffer before its ACC as at W,
                # and the schedule's I slot, not W's, pays for it (at stage 0 the
                # zero-bubble order puts I in the steady state and W in the drain).
                replica.bind_grad(instr.mb, self._acc_next(instr, replica))
                torch.autograd.backward(roots, grads, inputs=replica.params)
                saved.done = True
            else:
                saved.grad = grad  # W is the whole backward
            return
        if len(roots) == 1 and len(inputs) == 1 and replica.params:
            # Input gradient only, keeping the weight branches' gradients for W.
            saved.work = backward_input(roots[0], grads[0] if grads else None, inputs[0],
                                        replica.params)
        else:  # a tree boundary: the graph stays for W
            saved.grad = grad
            torch.autograd.backward(roots, grads, inputs=inputs, retain_graph=True)
        self._hand_input_grad(key, saved.x)

    def _acc_next(self, instr: Instr, replica: StageReplica) -> bool:
        """Whether the backward may add straight into the accumulator: the next
        instruction other than sends and receives is this micro-batch's ACC
        (`StageReplica.direct_accumulation`)."""
        if not replica.direct_accumulation():
            return False
        for later in self._stream[self._index + 1:]:
            if later.op not in COMM_OPS:
                return later.op == "ACC" and self._key(later) == self._key(instr)
        return False

    def _w_reads_as(self, instr: Instr) -> bool:
        """Whether the W of I's micro-batch, later in the stream being run, reads
        the version I reads (False when it is not in this piece of the stream)."""
        stream, key = self._stream, self._key(instr)
        for later in stream[self._index + 1:]:
            if later.op == "W" and self._key(later) == key:
                return later.version == instr.version
        return False

    def _op_W(self, instr: Instr) -> None:
        replica = self._read(instr)
        key = self._key(instr)
        saved = self._take(self.saved, key, "forward state")
        if saved.done:
            return  # I ran the whole backward (a stage without input gradient)
        replica.bind_grad(instr.mb, self._acc_next(instr, replica))
        if saved.work is not None:
            backward_weight(saved.work)  # no recomputation of I's chain
        elif replica.params:
            torch.autograd.backward(*self.io.roots(key[1], saved.out, saved.grad),
                                    inputs=replica.params)

    # ---- communication --------------------------------------------------------------
    def _outgoing(self, instr: Instr) -> object:
        """The tensor a SEND_ACT / SEND_GRAD sends."""
        if instr.op == "SEND_ACT":
            return self._take(self.act_out, self._key(instr), "activation")
        return self._take(self.grad_out, self._key(instr), "input gradient")

    # ---- weights -----------------------------------------------------------------------
    def _op_ACC(self, instr: Instr) -> None:
        replica = self._replica(instr)
        if self.inject.at("nan-grad", instr.stage, instr.mb):
            replica.poison_gradient(instr.mb)
        replica.accumulate(instr.mb)  # one launch; NaN/Inf flagged on the device

    def _op_STEP(self, instr: Instr, nxt: Instr | None) -> None:
        if self.on_nan == faults.SKIP:
            self._deferred.append((instr, nxt))  # settled at the end of the body
            return
        poison = self.poison[(instr.pipeline or 0, instr.stage)]
        found = poison.first_bad(self._replica(instr))
        if found:
            raise faults.NumericalFault(
                faults.fault_message(found[0], found[1], instr.stage, instr.pipeline or 0, self.m))
        poison.clear()
        self._step(instr, nxt)

    def _step(self, instr: Instr, nxt: Instr | None) -> None:
        replica = self._replica(instr)
        alpha = None
        if (nxt is not None and nxt.op == "LOOKAHEAD" and nxt.stage == instr.stage
                and nxt.pipeline == instr.pipeline and nxt.version == instr.version):
            alpha = float(nxt.alpha)  # fused: the LOOKAHEAD that follows is written here
            self._fused_lookahead = nxt
        stash = None
        fused, self._fused_stash = self._fused_stash, None
        if fused is not None:
            stash = fused.version  # the STASH just before: written by the same pass
        count = instr.count
        if self.dp_size > 1 and self.dp_sparse is None:
            self.transport.dp_allreduce(replica.grad_sum())
            count *= self.dp_size
        replica.step(instr.version, count, lookahead_alpha=alpha, stash=stash)
        if self.dp_sparse is not None:  # async-sparse DP: own gradients, drift EMA
            self.dp_sparse.after_step(replica)

    def _op_LOOKAHEAD(self, instr: Instr) -> None:
        if self._fused_lookahead != instr:
            raise RuntimeError("LOOKAHEAD must follow the STEP that produces its version")
        self._fused_lookahead = None

    def _op_SPARSE_SYNC(self, instr: Instr) -> None:
        if self.dp_sparse is not None:  # else one replica: nothing to average with
            self.dp_sparse.sync(self._replica(instr), instr.version)

    def _op_STASH(self, instr: Instr, nxt: Instr | None) -> None:
        if (nxt is not None and nxt.op == "STEP" and nxt.stage == instr.stage
                and nxt.pipeline == instr.pipeline and nxt.version == instr.version + 1
                and self.on_nan == faults.STOP):
            self._fused_stash = instr  # fused: the STEP that follows writes the stash
            return
        self._replica(instr).stash_current(instr.version)


    def _op_SWAP(self, instr: Instr) -> None:
        self._replica(instr).point_at(instr.version, bool(instr.lookahead))

    def _op_RELEASE(self, instr: Instr) -> None:
        self._replica(instr).release(instr.version)

    @staticmethod
    def _take(store: dict[Key, object], key: Key, what: str):
        try:
            return store.pop(key)
        except KeyError:
            raise RuntimeError(f"no {what} for (pipeline, stage, mb) = {key}") from None


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host batch on the stage's device; to a GPU through pinned memory and without
    a host sync (a pageable copy would wait for the device on every micro-batch)."""
    if device.type != "cuda" or t.device == device:
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
