"""The processes of ``mlform serve``: the listening socket, the workers, graceful shutdown.

Processes. :func:`serve` binds the listening socket, then with ``workers == 1`` serves in
the calling process; with more it forks that many workers, which share the socket (the
kernel spreads connections between them) and the model, loaded once before forking
(copy-on-write). The parent supervises: it forwards SIGTERM/SIGINT, restarts a worker that
dies unexpectedly (giving up, and stopping the others, after 6 deaths within 60 s) and
exits once every worker is gone: 0 when all shut down cleanly and none ever died, else 1.
Workers get SIGTERM if the parent itself dies (Linux ``PR_SET_PDEATHSIG``).

Graceful shutdown (SIGTERM or SIGINT): the worker marks itself not ready, stops accepting
connections, finishes the requests in flight and those already sent on open connections
(for up to ``drain_timeout``, 30 s), writes and fsyncs the prediction log, and exits 0.

Readiness: once the socket listens and the model is loaded, one line goes to the
``mlform.serving`` logger (stderr under the CLI)::

    serving model.diagnosis@v2 as diagnosis on http://127.0.0.1:8080 (2 workers)

A launcher may wait for that line (it carries the port chosen for ``--port 0``) or poll
``GET /v2/health/ready`` until it answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from mlform.serving.loaded_model import LoadedModel, ServeError
from mlform.serving.metrics import (
    ServerMetrics,
    create_multiprocess_dir,
    remove_multiprocess_dir,
    use_multiprocess,
)
from mlform.serving.prediction_log import PredictionLog, write_schema
from mlform.serving.server import ModelServer, ServeOptions, _plain, log

__all__ = ["bind_socket", "serve"]

_RESTART_WINDOW_S = 60.0
_MAX_RESTARTS = 5


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ServeError otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family, backlog=2048)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ServeError(
            f"cannot listen on {host}:{port}: {reason}; choose another --host/--port "
            "(--port 0 picks a free port)"
        ) from None
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(model: LoadedModel, options: ServeOptions, *, sock: socket.socket | None = None) -> int:
    """Serve ``model`` until SIGTERM/SIGINT; returns the exit status (0: clean shutdown)."""
    name = options.name or model.name
    listener = sock if sock is not None else bind_socket(options.host, options.port)
    if options.prediction_log is not None:
        schema = {
            "feature_names": list(model.signature.feature_names),
            "ref": model.ref,
            "classes": [_plain(c) for c in model.signature.classes],
            "model": name,
            "version": model.version,
            "task": model.task,
        }
        try:
            write_schema(options.prediction_log, schema)
        except OSError as exc:
            listener.close()
            raise ServeError(
                f"cannot write the prediction log in {options.prediction_log}: "
                f"{exc.strerror or exc}; give a writable --prediction-log directory"
            ) from None
    workers = max(1, options.workers)
    banner = (
        f"serving {model.ref} as {name} on {_url(listener)} "
        f"({workers} worker{'s' if workers != 1 else ''})"
    )
    if workers == 1:
        use_multiprocess(None)
        try:
            return asyncio.run(_worker(model, listener, name, options, None, banner))
        finally:
            listener.close()
    metrics_dir = create_multiprocess_dir()
    use_multiprocess(metrics_dir)
    _freeze_heap()  # before forking: the workers share these pages copy-on-write
    try:
        return _Supervisor(model, listener, name, options, metrics_dir, banner).run()
    finally:
        listener.close()
        remove_multiprocess_dir(metrics_dir)


async def _worker(
    model: LoadedModel,
    listener: socket.socket,
    name: str,
    options: ServeOptions,
    metrics_dir: Path | None,
    banner: str | None,
) -> int:
    """Serve on ``listener`` in this process until a signal, then drain; returns 0."""
    loop = asyncio.get_running_loop()
    model.warm_up()
    metrics = ServerMetrics(
        name,
        str(model.version),
        classification=model.signature.classification,
        labels=model.signature.classes,
        multiprocess_dir=metrics_dir,
    )
    prediction_log = None
    if options.prediction_log is not None:
        prediction_log = PredictionLog(
            options.prediction_log, model=name, ref=model.ref, version=model.version
        )
        prediction_log.start()
    app = ModelServer(
        model,
        name=name,
        metrics=metrics,
        prediction_log=prediction_log,
        max_body_bytes=options.max_body_bytes,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if _early_stop.requested:  # signalled while this worker was starting: drain at once
        stop.set()
    runner = web.ServerRunner(app.make_server(), shutdown_timeout=options.drain_timeout)
    try:
        await runner.setup()
        _freeze_heap()
        site = web.SockSite(runner, listener)
        await site.start()
        if banner is not None:
            log.info("%s", banner)
        await stop.wait()
        # Drain: not ready, no new connections, finish what was sent, then close.
        app.ready = False
        deadline = loop.time() + options.drain_timeout
        await site.stop()
        await asyncio.sleep(0.05)  # let accepted connections deliver their requests
        while app.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await runner.cleanup()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)  # (which restores the default: dying)
            signal.signal(signum, _note_early_stop)  # a late signal must not kill the drain
        if prediction_log is not None:
            prediction_log.close()
    return 0


class _EarlyStop:
    """A worker process is told to stop by SIGTERM; one that arrives before its event loop
    handles signals (the model warming up on a busy machine), or after it stopped handling
    them (the drain's last steps), is noted here instead of killing the worker."""

    requested = False


_early_stop = _EarlyStop()


def _note_early_stop(_signum: int, _frame: Any) -> None:
    _early_stop.requested = True  # a plain store: safe in a signal handler


def _freeze_heap() -> None:
    """Move everything allocated so far (the model, the libraries) out of the garbage
    collector's reach: full collections then scan only what requests allocate, which keeps
    their pauses (and latency spikes) short, and forked workers do not touch the shared
    pages by collecting them."""
    gc.collect()
    gc.freeze()


def _exit_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the supervisor dies (even by SIGKILL), so
    that no orphaned worker keeps serving; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _limit_threads(workers: int) -> None:
    """Give each worker its share of the CPUs for BLAS/OpenMP/torch thread pools."""
    share = max(1, (os.cpu_count() or 1) // workers)
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=share)
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].set_num_threads(share)


class _Supervisor:
    """The parent of the worker processes: forks, forwards signals, restarts, reaps."""

    def __init__(
        self,
        model: LoadedModel,
        listener: socket.socket,
        name: str,
        options: ServeOptions,
        metrics_dir: Path,
        banner: str,
    ) -> None:
        self.model, self.listener, self.name = model, listener, name
        self.options, self.metrics_dir, self.banner = options, metrics_dir, banner
        self.pid = os.getpid()
        self.children: set[int] = set()
        self.stopping = False
        self.failed = False
        self.deaths: list[float] = []

    def _spawn(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        code = 1
        try:  # the worker: never returns into the caller's code
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _note_early_stop)
            _exit_with_parent()
            if os.getppid() != parent:  # the supervisor died before that took effect
                return
            _limit_threads(self.options.workers)
            code = asyncio.run(
                _worker(self.model, self.listener, self.name, self.options, self.metrics_dir, None)
            )
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(code)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping or os.getpid() != self.pid:  # (a worker before its own handlers)
            return
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.options.workers):
                self._spawn()
            log.info("%s", self.banner)
            kill_at: float | None = None
            while self.children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    if self.stopping and kill_at is None:
                        kill_at = time.monotonic() + self.options.drain_timeout + 10.0
                    if kill_at is not None and time.monotonic() > kill_at:
                        self._kill_all()
                    time.sleep(0.05)
                    continue
                self.children.discard(pid)
                self._reaped(pid, os.waitstatus_to_exitcode(status))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 1 if self.failed else 0

    def _reaped(self, pid: int, code: int) -> None:
        if self.stopping:
            if code != 0:
                self.failed = True
                log.error("worker %d exited with status %d while shutting down", pid, code)
            return
        self.failed = True
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < _RESTART_WINDOW_S] + [now]
        if len(self.deaths) > _MAX_RESTARTS:
            log.error(
                "worker %d exited with status %d; workers died %d times in %g s, giving up",
                pid,
                code,
                len(self.deaths),
                _RESTART_WINDOW_S,
            )
            self._on_signal(signal.SIGTERM, None)
            return
        log.error("worker %d exited unexpectedly with status %d; starting another", pid, code)
        self._spawn()

    def _kill_all(self) -> None:
        self.failed = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
