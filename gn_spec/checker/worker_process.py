"""The parent's handle on the worker process (:class:`WorkerProcess`): start the worker, send calls, notice
crashes and hangs, restart.  What runs inside the worker is :mod:`gn_spec.checker.worker_main`.

The parent never imports the target.  Each call is answered by its own message, so ``timeout`` applies per
call: a call that does not answer in time gets the worker killed (SIGKILL, its whole process group) and is
reported as a hang; a worker that dies is reported with its exit status or signal and the tail of its log
(faulthandler prints a Python traceback there on a segfault or abort).  The next call starts a fresh worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from gn_spec.checker import protocol
from gn_spec.checker.builtins import BY_NAME
from gn_spec.checker.target import CheckConfig, UsageError

#: Seconds allowed for the worker to start and import the target, on top of the per-call timeout. Generous:
#: the `reference` target compiles its kernels there on the first run after an install (about a minute on
#: a busy 2-core machine; later runs load numba's on-disk cache in under a second).
IMPORT_GRACE = 300.0

#: Hung calls a run waits the full ``--timeout`` for (see :meth:`WorkerProcess.wait_for`).
HANG_BUDGET = 2
#: Once the hang budget is spent, a call is waited for this many times the slowest call the target answered
#: in the run, at least :data:`MIN_WAIT` seconds and at most ``--timeout``.
WAIT_FACTOR = 10.0
MIN_WAIT = 1.0

#: How much of the worker's log a crash report quotes (characters).
LOG_TAIL = 1500


@dataclass
class CallRequest:
    """One operation to run on the target: ``op`` is forward, backward or double_backward."""

    op: str
    num_groups: int
    eps: float
    arrays: dict[str, np.ndarray]
    return_inputs: bool = False


@dataclass
class CallResult:
    """What became of one call.

    ``status``: ``ok`` (returned; ``outputs`` describes the values), ``raised`` (an exception, in
    ``exception``), ``bad_return`` (wrong structure, ``message``), ``unsupported`` (the API cannot do it),
    ``unexpressible`` (the target cannot take this valid input, ``message`` says why),
    ``crashed`` (the worker died: ``message`` has the exit status and log tail), ``timeout`` (no answer within
    the per-call timeout), ``protocol_error`` (the worker sent garbage).
    """

    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)
    message: str = ""
    exception: dict[str, Any] | None = None
    inputs_after: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    tampered: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def is_failure_of_process(self) -> bool:
        return self.status in ("crashed", "timeout", "protocol_error")

    def reason(self) -> str:
        """One line saying why the call did not return values (empty for ``ok``)."""
        if self.status == "raised" and self.exception is not None:
            e = self.exception
            return f"raised {e['type']}: {e['message']}".rstrip(": ") + f" (during {e['stage']})"
        return self.message


def describe_exit(returncode: int | None) -> str:
    """``killed by SIGSEGV (Segmentation fault)`` or ``exited with status 3``."""
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
            return f"was killed by {sig.name} ({signal.strsignal(sig)})"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class WorkerProcess:
    """The parent's handle on a restartable worker process for one check configuration."""

    def __init__(self, config: CheckConfig, compile_cache: str | None = None) -> None:
        self.config = config
        #: a directory the run's workers share their compiled programs through (JAX's persistent
        #: compilation cache, for the JAX-based targets), or None
        self.compile_cache = compile_cache
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn_in: Connection | None = None
        self.conn_out: Connection | None = None
        self.log = tempfile.TemporaryFile()
        self.starts = 0
        self.hello: dict[str, Any] = {}
        self.tampered: dict[str, str] = {}  # change -> when it was first seen
        target = config.target
        builtin = BY_NAME.get(target.location) if target.kind == "builtin" else None
        self.compile_grace = builtin.compile_grace if builtin is not None else 0.0
        self.compiled_kinds: set[tuple[Any, ...]] = set()  # call kinds this worker has compiled
        self.hangs = 0  # calls of this run that hung
        self.answered = 0  # calls of this run that came back (whatever they returned)
        self.slowest = 0.0  # seconds of the slowest of them, measured by the worker

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start a worker and import the target; raises UsageError when it cannot be imported."""
        self.close()
        self.compiled_kinds.clear()  # a new process compiles anew
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.log.close()
        # a fresh log per worker: a crash report quotes only its own worker
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
        # Idle OpenMP threads (torch's) spin for a while after each call; on a small machine they steal the
        # CPU the checker needs between calls (a 5x slower round trip measured on 2 cores).  PASSIVE changes
        # how they wait, not what they compute; a value the user set is kept.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gn_spec.checker.worker_main", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole, deaf to the terminal's Ctrl-C
            env=env,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.conn_out = Connection(to_child_w, readable=False)
        self.conn_in = Connection(from_child_r, writable=False)
        self.starts += 1
        t = self.config.target
        init = {
            "type": "init",
            "kind": t.kind,
            "text": t.text,
            "location": t.location,
            "function": t.function,
            "api": self.config.api,
            "dtype": self.config.dtype,
            "device": self.config.device,
            "memory_format": self.config.memory_format,
            "target_options": list(self.config.target_options),
            "compile_cache": self.compile_cache,
        }
        try:
            protocol.send_message(self.conn_out, init)
        except OSError:
            pass  # the worker died before reading; reported below
        reply = self._receive(IMPORT_GRACE + self.config.timeout)
        if isinstance(reply, CallResult):
            what = "hung" if reply.status == "timeout" else "died"
            self.close()
            tail = f"\n{reply.log}" if reply.log else ""
            raise UsageError(
                f"TARGET {t.text!r} cannot be imported: the worker {what} while importing it: "
                f"{reply.message}{tail}"
            )
        header, _ = reply
        if header.get("type") != "hello":
            self.close()
            raise UsageError(
                f"TARGET {t.text!r}: the worker answered {header.get('type')!r} instead of hello"
            )
        if header.get("status") != "ready":
            self.close()
            raise UsageError(header.get("message", "the target cannot be used"))
        self.hello = header
        for change in header.get("tampered", []):
            self.tampered.setdefault(change, "while TARGET was imported")
        return header

    def close(self) -> None:
        """Stop the worker (asking first, then killing its process group)."""
        if self.proc is None:
            return
        try:
            if self.conn_out is not None and self.proc.poll() is None:
                protocol.send_message(self.conn_out, {"type": "exit"})
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._kill()
        for conn in (self.conn_in, self.conn_out):
            if conn is not None:
                conn.close()
        self.proc = self.conn_in = self.conn_out = None

    def _kill(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.wait()

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - 4 * LOG_TAIL))
        lines = self.log.read().decode(errors="replace").splitlines()
        # faulthandler's list of extension modules and the interpreter's frames say nothing about the target
        kept = [ln for ln in lines if not ln.startswith("Extension modules:") and "<frozen runpy>" not in ln]
        return "\n".join(kept).strip()[-LOG_TAIL:]

    # -- calls
    # -------------------------------------------------------------------------------------------------
    def _receive(self, timeout: float) -> tuple[dict[str, Any], list[np.ndarray]] | CallResult:
        """One message, or a CallResult saying the worker hung, died or spoke garbage (it is then gone)."""
        assert self.conn_in is not None and self.proc is not None
        if not self.conn_in.poll(timeout):
            self._kill()
            return CallResult(
                "timeout", message=f"no answer within the {timeout:g} s timeout (the call hung)"
            )
        try:
            return protocol.recv_message(self.conn_in)
        except (EOFError, OSError):
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._kill()
            tail = self.log_tail()
            msg = f"the worker process {describe_exit(self.proc.returncode)}"
            return CallResult("crashed", message=msg, log=tail)
        except protocol.ProtocolError as exc:
            self._kill()
            return CallResult("protocol_error", message=f"the worker sent a malformed message: {exc}")

    def run(self, requests: list[CallRequest]) -> list[CallResult]:
        """Run calls in order (one round trip); after a crash or hang the remaining calls are not run."""
        if self.hangs >= HANG_BUDGET and self.answered == 0:
            message = (
                f"not called: the target hung on each of the {self.hangs} calls made so far and answered "
                "none, so the run makes no more"
            )
            return [CallResult("timeout", message=message) for _ in requests]
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.conn_out is not None
        packer = protocol.ArrayPacker()
        specs = [
            {
                "op": r.op,
                "num_groups": r.num_groups,
                "eps": r.eps,
                "return_inputs": r.return_inputs,
                "arrays": {name: packer.add(a) for name, a in r.arrays.items()},
            }
            for r in requests
        ]
        results: list[CallResult] = []
        try:
            protocol.send_message(self.conn_out, {"type": "calls", "calls": specs}, packer.arrays)
        except OSError:
            pass  # the worker is gone; _receive reports how
        for request in requests:
            wait = self.wait_for() + self._grace(request)
            reply = self._receive(wait)
            if isinstance(reply, CallResult) and reply.status == "timeout":
                self.hangs += 1
                if wait < self.config.timeout:
                    reply.message += (
                        f"; after {HANG_BUDGET} hung calls this run waits {WAIT_FACTOR:g} times the slowest "
                        f"call the target answered ({self.slowest:.3g} s), at least {MIN_WAIT:g} s, instead "
                        f"of --timeout {self.config.timeout:g}"
                    )
            if isinstance(reply, CallResult):
                results.append(reply)
                self.close()
                break
            results.append(self._result(*reply))
        results += [
            CallResult("not_run", message="not run: an earlier call in the batch failed")
            for _ in requests[len(results) :]
        ]
        return results

    def wait_for(self) -> float:
        """How long the next call may take before it counts as hung: ``--timeout`` for the first
        :data:`HANG_BUDGET` hangs of the run; after them, :data:`WAIT_FACTOR` times the slowest answered call
        (between :data:`MIN_WAIT` and ``--timeout``), so that a target that hangs on many inputs is judged in
        about a minute instead of one full timeout per property that meets a hanging input."""
        timeout = self.config.timeout
        if self.hangs < HANG_BUDGET:
            return timeout
        return min(timeout, max(MIN_WAIT, WAIT_FACTOR * self.slowest))

    def _grace(self, request: CallRequest) -> float:
        """Extra seconds for the first call of its kind to a target that compiles per kind (see
        :attr:`gn_spec.checker.builtins.BuiltinTarget.compile_grace`); 0 otherwise."""
        if self.compile_grace == 0:
            return 0.0
        # torch.compile specializes dimensions of size 0 and 1 even with dynamic shapes: a kind is the rank
        # with each size read as 0, 1 or "more", and which arrays are given
        x = request.arrays.get("x")
        sizes = tuple(min(s, 2) for s in x.shape) if x is not None else ()
        kind = (request.op, sizes, *sorted(request.arrays))
        if kind in self.compiled_kinds:
            return 0.0
        self.compiled_kinds.add(kind)
        return self.compile_grace

    def _result(self, header: dict[str, Any], arrays: list[np.ndarray]) -> CallResult:
        for change in header.get("tampered", []):
            self.tampered.setdefault(change, "while TARGET was being called")
        self.answered += 1
        self.slowest = max(self.slowest, float(header.get("seconds", 0.0)))
        return CallResult(
            status=str(header.get("status")),
            outputs=header.get("outputs", {}),
            arrays=arrays,
            message=str(header.get("message", "")),
            exception=header.get("exception"),
            inputs_after=header.get("inputs_after", {}),
            seconds=float(header.get("seconds", 0.0)),
            tampered=list(header.get("tampered", [])),
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.log.close()
