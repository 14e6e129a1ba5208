"""The background I/O thread that the transport's socket owners share.

ZeroMQ sockets are not thread-safe, so each of `TransitionServer`, `TransitionClient` and `ParamPublisher`
keeps its sockets in one thread of its own. This module is that thread's life, written once: a context, the
owner's sockets opened inside the thread (an error there is raised in the constructor's thread), a poll loop
that user threads can wake, ZAP authentication when CURVE is on, and an orderly close of everything at the end.
The owner supplies what differs: which sockets to open and what to do on each turn of the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import zmq

from serl_gs.transport._sockets import WakePipe, close_all
from serl_gs.transport.auth import ZapHandler
from serl_gs.transport.errors import TransportError

logger = logging.getLogger(__name__)

Events = dict  # zmq.Poller.poll() as a dict: socket (or file descriptor) -> event flags


class IoThread:
    """Runs `open_sockets(io)` then `turn(events)` until `stop()`; owns the context and every socket.

    - `open_sockets(io)` runs in the thread, creates sockets with `io.socket()` (and `io.monitor()`,
      `io.serve_zap()`), and returns those to poll for input. What it raises, the constructor raises.
    - `turn(events)` runs after every poll, also when nothing arrived (timers, acks due, broadcasts).
    - `finish()` runs once after the loop stops, while the sockets are still open (last acks, say).
    - `on_failure(exc)` runs if `turn` raised: the thread logs it, tells the owner, and closes.
    """

    def __init__(
        self,
        name: str,
        *,
        open_sockets: Callable[[IoThread], Iterable[zmq.Socket]],
        turn: Callable[[Events], None],
        poll_interval_s: float,
        linger_s: float,
        finish: Callable[[], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name = name
        self._open_sockets = open_sockets
        self._turn = turn
        self._finish = finish
        self._on_failure = on_failure
        self._poll_ms = int(poll_interval_s * 1000)
        # How long stop() waits: the owner's linger (last acks, flushes), a few turns, and slack for a busy machine.
        self._stop_timeout_s = linger_s + 10 * poll_interval_s + 5.0
        self._context: zmq.Context | None = None
        self._sockets: list[zmq.Socket] = []
        self._monitored: list[zmq.Socket] = []
        self._zap: ZapHandler | None = None
        self._stop = threading.Event()
        self._wake = WakePipe()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"serl_gs-{name}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._wake.close()
            raise self._start_error

    # ---- for open_sockets (in the thread) ----------------------------------------------------------
    def socket(self, kind: int) -> zmq.Socket:
        """A socket of this thread's context, closed with it."""
        sock = self._context.socket(kind)
        self._sockets.append(sock)
        return sock

    def monitor(self, sock: zmq.Socket, events: int) -> zmq.Socket:
        """A monitor socket reporting `events` of `sock`; the monitor is stopped before the sockets close."""
        monitor = sock.get_monitor_socket(events)
        monitor.linger = 0
        self._sockets.append(monitor)
        self._monitored.append(sock)
        return monitor

    def serve_zap(self, allowed_client_keys: Iterable[bytes]) -> None:
        """Admits only these CURVE client keys; call before binding the CURVE server sockets."""
        self._zap = ZapHandler(self._context, allowed_client_keys)

    # ---- for the owner (any thread) ------------------------------------------------------------------
    def wake(self) -> None:
        """Makes the thread take a turn now instead of at the end of its poll interval."""
        self._wake.wake()

    def stop(self) -> bool:
        """Ends the loop (after `finish`), closes every socket and the context; False if still running."""
        self._stop.set()
        self._wake.wake()
        self._thread.join(timeout=self._stop_timeout_s)
        if self._thread.is_alive():
            logger.error("%s: I/O thread did not stop in %.1f s", self.name, self._stop_timeout_s)
            return False
        self._wake.close()
        return True

    # ---- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        self._context = zmq.Context(io_threads=1)
        try:
            polled = list(self._open_sockets(self))
        except BaseException as exc:  # raised again in the constructor's thread
            known = (zmq.ZMQError, ValueError, TransportError)
            self._start_error = exc if isinstance(exc, known) else RuntimeError(str(exc))
            self._close()
            self._ready.set()
            return
        self._ready.set()

        poller = zmq.Poller()
        for sock in polled:
            poller.register(sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap.socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(self._poll_ms))
                if self._wake.fileno() in events:
                    self._wake.drain()
                if self._zap is not None and self._zap.socket in events:
                    self._zap.handle()
                self._turn(events)
            if self._finish is not None:
                self._finish()
        except Exception as exc:
            logger.exception("%s: I/O thread failed; closing", self.name)
            if self._on_failure is not None:
                self._on_failure(exc)
        finally:
            self._close()

    def _close(self) -> None:
        for sock in self._monitored:
            sock.disable_monitor()
        close_all(self._context, self._sockets, self._zap)
