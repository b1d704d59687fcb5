"""``--jobs N``: the properties of a run shared among N processes of the checker (:class:`JobProcesses`).

Each job process is a fresh interpreter (``python -m gn_spec.checker.jobs``, as the worker is; nothing of the
caller's process is copied or re-imported, so ``run_check(jobs=2)`` needs no ``if __name__ == "__main__"``
guard in the caller's script) with its own worker of the target and its own :class:`Probe`.  It runs the
properties it is sent, one at a time, with :func:`gn_spec.checker.runner.run_property`, and sends back each
:class:`~gn_spec.checker.report.PropertyResult` (pickled) with the tampering its worker first saw during the
property and its counters.  The parent sends the next property to whichever process is free.

The job process ignores Ctrl-C: the parent, in the same terminal, gets it and stops the processes with
SIGTERM, on which each kills its worker (in a session of its own, and maybe in a hung call) and exits.  One
whose parent is gone reads the end of its pipe and exits the same way.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from gn_spec.checker.target import CheckConfig, UsageError


@dataclass
class JobResult:
    """What a job process sends back for one property."""

    result: Any  # PropertyResult
    tampered: dict[str, str]  # change -> when: first seen by the job's worker during the property
    worker_starts: int
    calls: int
    hung_calls: int
    answered: int  # calls that came back (whatever they returned)
    slowest: float  # seconds of the slowest call the job's worker answered so far


class _Job:
    def __init__(self, config: CheckConfig, compile_cache: str | None) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gn_spec.checker.jobs", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.send = Connection(to_child_w, readable=False)
        self.receive = Connection(from_child_r, writable=False)
        self.send.send((config, compile_cache))
        self.running: str | None = None

    def close(self) -> None:
        try:
            self.send.send(None)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.send.close()
        self.receive.close()

    def stop(self) -> None:
        """End the job process now (the run is over early): SIGTERM makes it close its worker (which may be
        in a hung call, and is in a session of its own) before it exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.close()


class JobProcesses:
    """``jobs`` job processes for ``config``; :meth:`run` shares properties among them.

    :meth:`start` spawns them (each then starts its worker, which imports the target) and returns at once,
    so that the caller can start its own worker meanwhile; :meth:`run` starts them if that was not done.
    Used as a context manager, the processes are stopped on the way out (closed if :meth:`run` finished).
    """

    def __init__(self, config: CheckConfig, jobs: int, compile_cache: str | None = None) -> None:
        self.config, self.jobs, self.compile_cache = config, jobs, compile_cache
        self.started: list[_Job] = []
        self.clean = False

    def start(self, properties: int) -> None:
        """Spawn as many processes as ``properties`` can use (at most ``jobs``)."""
        if not self.started:
            self.started = [_Job(self.config, self.compile_cache) for _ in range(min(self.jobs, properties))]

    def __enter__(self) -> JobProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the processes (after a finished run) or end them now (otherwise)."""
        jobs, self.started = self.started, []
        for job in jobs:
            job.close() if self.clean else job.stop()

    def run(self, names: list[str]) -> Iterator[JobResult]:
        """Run the properties ``names`` (whichever process is free takes the next); yields each result as
        it comes.  A property that raised in its process raises here (a UsageError as itself, anything
        else as a :class:`~gn_spec.checker.runner.CheckerBug` with the process's traceback)."""
        from gn_spec.checker.runner import CheckerBug

        queue = list(names)
        self.start(len(queue))
        jobs = self.started
        self.clean = False
        try:
            for job in jobs:
                job.running = queue.pop(0)
                job.send.send(job.running)
            while any(job.running for job in jobs):
                busy = {job.receive: job for job in jobs if job.running}
                for conn in wait(list(busy)):
                    job = busy[conn]  # type: ignore[index]
                    try:
                        kind, payload = job.receive.recv()
                    except (EOFError, OSError):
                        code = job.proc.wait()
                        raise CheckerBug(
                            f"the --jobs process running {job.running} ended (exit status {code})"
                        ) from None
                    if kind == "usage":
                        raise UsageError(payload)
                    if kind == "error":
                        raise CheckerBug(f"{job.running} raised in its --jobs process:\n{payload}")
                    job.running = queue.pop(0) if queue else None
                    if job.running is not None:
                        job.send.send(job.running)
                    yield payload
            self.clean = True
        finally:
            self.stop()


def _serve(conn_in: Connection, conn_out: Connection) -> None:
    from gn_spec.checker.deviations import for_config
    from gn_spec.checker.probe import Probe
    from gn_spec.checker.runner import CheckerBug, run_property, selected_properties
    from gn_spec.checker.worker_process import WorkerProcess

    config: CheckConfig
    compile_cache: str | None
    config, compile_cache = conn_in.recv()
    assert config.seed is not None
    deviations = for_config(config)
    with WorkerProcess(config, compile_cache) as worker:
        _WORKER.append(worker)
        probe = Probe(config, worker)
        while True:
            try:
                name = conn_in.recv()
            except EOFError:
                return
            if name is None:
                return
            before = (worker.starts, probe.calls, worker.hangs, set(worker.tampered), worker.answered)
            try:
                if worker.starts == 0:
                    worker.start()
                (spec,) = selected_properties([name])
                result = run_property(spec, probe, config.seed, None, deviations)
            except UsageError as exc:
                conn_out.send(("usage", str(exc)))
                continue
            except (Exception, CheckerBug):  # sent to the parent, which reports it as a bug
                conn_out.send(("error", traceback.format_exc()))
                continue
            tampered = {k: v for k, v in worker.tampered.items() if k not in before[3]}
            reply = JobResult(
                result,
                tampered,
                worker.starts - before[0],
                probe.calls - before[1],
                worker.hangs - before[2],
                worker.answered - before[4],
                worker.slowest,
            )
            conn_out.send(("ok", reply))


#: The job's worker, for :func:`_terminated`.
_WORKER: list[Any] = []


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM: kill the worker's process group (it is in a session of its own) and exit at once."""
    for worker in _WORKER:
        if worker.proc is not None and worker.proc.poll() is None:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    os._exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops this process
    signal.signal(signal.SIGTERM, _terminated)
    conn_in = Connection(int(sys.argv[1]), writable=False)
    conn_out = Connection(int(sys.argv[2]), readable=False)
    try:
        _serve(conn_in, conn_out)
    except (EOFError, BrokenPipeError, pickle.PickleError):
        pass  # the parent is gone or stopped listening
    finally:
        conn_in.close()
        conn_out.close()


if __name__ == "__main__":
    # run as the module's importable self, so that what it pickles (JobResult) is named gn_spec.checker.jobs
    from gn_spec.checker import jobs as _module

    _module.main()
