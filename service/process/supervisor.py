"""Several worker processes that behave as one server: the parent binds, forks, replaces and drains them.

- Sockets: one listening socket per worker slot, all bound to the same port with SO_REUSEPORT, so the kernel
  spreads connections evenly by their address (one shared socket lets whichever worker wakes first take
  them, and long keep-alive connections then stay lopsided for their whole life). The parent holds a copy
  of each. When a worker dies the parent closes its slot's socket, so the connections queued in its backlog
  are reset at once and new ones go to the live workers; the replacement gets a socket that is bound but
  not listening, and joins the port's group only when it listens, once its models are loaded.
- Memory: the parent imports the serving code (FastAPI, onnxruntime, numpy) and forks, so those pages are
  shared copy-on-write; models load after the fork (an onnxruntime session's thread pools do not survive
  one).
- Supervision: a worker that dies is marked dead for the metrics (its gauges leave the scrape, its counters
  stay) and replaced in its slot; in-flight requests on its connections and those queued on its socket fail
  with a reset, the others go on.
  A slot that keeps dying at start stops the server instead of spinning.
- SIGTERM or SIGINT: forwarded once to every worker, each drains as a single process does; workers still
  running after the shutdown delay and drain timeout (plus a margin) are killed. Exit 0 when all exit 0.

Why not uvicorn's own supervisor (uvicorn.supervisors.Multiprocess): it has no hook when a worker dies
(the metrics need mark_process_dead), gives workers no identity (log lines and the control sockets need
one), spawns rather than forks (nothing shared), shares one socket, and waits for workers without a bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from service import logs
from service.config import Settings
from service.process.cpus import WorkerPlan
from service.process.ports import claim_grpc_port

log = logging.getLogger("modelserve.supervisor")

FAST_DEATH_S = 10.0  # a worker that dies sooner than this after its start counts towards a crash loop
MAX_FAST_DEATHS = 5  # in a row, in one slot: the server stops
KILL_MARGIN_S = 10.0


@dataclass
class Slot:
    index: int
    sock: socket.socket
    pid: int = 0
    started: float = 0.0
    fast_deaths: int = 0
    exit_codes: list[int] = field(default_factory=list)


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port (SO_REUSEPORT); refuses a port someone already listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # SO_REUSEPORT would let a second server by the same user share the port silently: check first.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets = []
    for _ in range(count):
        sock = slot_socket(host, port)
        sock.listen(2048)
        sockets.append(sock)
    return sockets


def slot_socket(host: str, port: int) -> socket.socket:
    """A socket bound to the server's port beside the others (SO_REUSEPORT), not yet listening: it gets no
    connections until its worker's uvicorn listens on it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def prepare_run_dir() -> tuple[Path, Path, bool]:
    """The server's private folder (control sockets, repository state) and the metrics folder.

    PROMETHEUS_MULTIPROC_DIR, when the operator sets it, is used and emptied of old files; else it is made
    inside the run folder. Both must be set before prometheus_client is imported anywhere.
    """
    run_dir = Path(tempfile.mkdtemp(prefix="modelserve-"))  # mode 0700: only this user reaches the sockets
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = Path(given) if given else run_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for old in metrics_dir.glob("*.db"):  # a previous server's counters would be summed into ours
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return run_dir, metrics_dir, not given


class Supervisor:
    def __init__(self, settings: Settings, plan: WorkerPlan) -> None:
        self.settings = settings
        self.plan = plan
        self.slots: list[Slot] = []
        self.stop_signal: int | None = None
        self.stopping_since: float | None = None
        self.failed = False

    def run(self) -> int:
        try:
            sockets = listen_sockets(self.settings.host, self.settings.port, self.plan.workers)
        except OSError as e:
            log.error("cannot listen on %s:%d: %s", self.settings.host, self.settings.port, e)
            return 1
        try:  # the workers bind it themselves (grpc): held here from now on, against a second server
            grpc_claim = claim_grpc_port(self.settings.host, self.settings.grpc_port, self.plan.workers)
        except OSError as e:
            log.error("%s", e.strerror)
            for sock in sockets:
                sock.close()
            return 1
        run_dir, metrics_dir, own_metrics_dir = prepare_run_dir()
        self.slots = [Slot(i, s) for i, s in enumerate(sockets)]
        # Imported here, after the metrics folder is set, and before the fork: shared by every worker.
        from service import metrics
        from service.process import worker

        self.metrics = metrics
        self.worker = worker
        # What the imports made lives as long as every worker: out of the cyclic GC's reach, so no
        # collection in a worker writes to (and so copies) the pages it shares with the others.
        gc.collect()
        gc.freeze()
        self.restarts = metrics.supervisor_restarts()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log.info(
            "%d workers on %s:%d (%d usable CPUs, %d onnxruntime intra-op threads per session)",
            self.plan.workers,
            self.settings.host,
            sockets[0].getsockname()[1],
            self.plan.cpus,
            self.plan.intra_op_threads,
        )
        self.run_dir = run_dir
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._watch()
        finally:
            for slot in self.slots:
                slot.sock.close()
            if grpc_claim is not None:
                grpc_claim.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            if not own_metrics_dir:
                for old in metrics_dir.glob("*.db"):
                    old.unlink()
        clean = all(code == 0 for s in self.slots for code in s.exit_codes[-1:])
        return 0 if clean and not self.failed else 1

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig

    def _spawn(self, slot: Slot) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._child(slot)
            except SystemExit as e:  # uvicorn exits 3 when the app fails to start
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                logs.flush_pending()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        slot.pid, slot.started = pid, time.monotonic()

    def _child(self, slot: Slot) -> int:
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent only, which forwards one SIGTERM
        _die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for other in self.slots:
            if other is not slot:
                other.sock.close()
        identity = self.worker.WorkerIdentity(slot.index, self.plan.workers, self.run_dir)
        return self.worker.serve(identity, slot.sock, self.plan.intra_op_threads)

    def _watch(self) -> None:
        while any(s.pid for s in self.slots):
            self._reap()
            if self.stop_signal is not None and self.stopping_since is None:
                self._stop_all()
            if self.stopping_since is not None:
                limit = self.settings.shutdown_delay_s + self.settings.drain_timeout_s + KILL_MARGIN_S
                if time.monotonic() - self.stopping_since > limit:
                    for slot in self.slots:
                        if slot.pid:
                            log.error("worker %d (pid %d) still running: killed", slot.index, slot.pid)
                            _signal(slot.pid, signal.SIGKILL)
            time.sleep(0.05)

    def _stop_all(self) -> None:
        self.stopping_since = time.monotonic()
        log.info("signal %d: draining %d workers", self.stop_signal or 0, self.plan.workers)
        for slot in self.slots:
            if slot.pid:
                _signal(slot.pid, signal.SIGTERM)
            # The workers hold their own copies: once each stops listening, its socket closes and new
            # connections are refused rather than left waiting in a backlog nobody reads.
            slot.sock.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            slot.exit_codes.append(code)
            slot.pid = 0
            self.metrics.mark_worker_dead(pid)
            if self.stopping_since is not None:
                log.info("worker %d (pid %d) exited with %d", slot.index, pid, code)
                continue
            lived = time.monotonic() - slot.started
            how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
            log.error("worker %d (pid %d) %s after %.1f s: starting a new one", slot.index, pid, how, lived)
            slot.fast_deaths = slot.fast_deaths + 1 if lived < FAST_DEATH_S else 0
            if slot.fast_deaths >= MAX_FAST_DEATHS:
                log.error("worker %d died %d times in a row at start: stopping", slot.index, slot.fast_deaths)
                self.failed = True
                self.stop_signal = signal.SIGTERM
                continue
            try:
                self._renew_socket(slot)
            except OSError as e:
                log.error("worker %d: cannot bind its port again (%s): stopping", slot.index, e)
                self.failed = True
                self.stop_signal = signal.SIGTERM
                continue
            self.restarts.inc()
            if slot.fast_deaths:
                time.sleep(min(2.0, 0.1 * 2**slot.fast_deaths))
            self._spawn(slot)

    def _renew_socket(self, slot: Slot) -> None:
        """The dead worker's listening socket closes with this last copy: the connections queued in its
        backlog are reset now (not left waiting while a replacement loads its models), and the kernel sends
        new ones to the live workers. The replacement listens on a fresh socket once it is ready."""
        host, port = slot.sock.getsockname()[:2]
        slot.sock.close()
        slot.sock = slot_socket(host, port)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (kill -9 of the parent leaves no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
