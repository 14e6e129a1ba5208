"""One logging path: every serl_gs module logs to `logging.getLogger(__name__)`; an entry point calls `configure`.

    configure("learner")              # once, in the node's main, before the node starts
    log = logging.getLogger(__name__)  # in a module
    log.info("resumed replay: %s", stats)      ->  [learner] resumed replay: {...}
    log.warning("refused actor %r", peer)       ->  [learner] warning: refused actor 'a0'

Why the lines stay what people and scripts read. Before this module the nodes printed their lines to stdout as
"[node] message" ("[node] warning: ..." for warnings): `configure` writes serl_gs's records in that form, to
the stdout of the moment (looked up at each line, so a redirected or captured stdout gets them), flushed line by
line, so the node's log files, the end-to-end tests and the launch scripts read the same lines as before. The
node's name is the process's (one node a process; the name of a node run in-process, inside a test, is
whatever its caller configured). Library code never configures logging (nothing happens at import): without
`configure`, serl_gs's records go to the root logger like any library's.

Other libraries stay quiet unless asked: orbax logs every save at INFO and every read-only open at WARNING.
`verbosity` uses absl's scale for them (None: errors only; -1: warnings too; 0: info; 1: debug, serl_gs's
debug lines too).
"""

from __future__ import annotations

import logging
import sys
import time

PACKAGE = "serl_gs"  # the logger every serl_gs module's logger sits under
_PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class _NodeFormatter(logging.Formatter):
    """`[node] message`, with "warning: " / "error: " before a warning's / an error's message."""

    def __init__(self, node: str):
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line = f"[{self.node}] {_PREFIX.get(record.levelno, '')}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _CurrentStdout(logging.Handler):
    """Writes to whatever `sys.stdout` is when a line is written (a test's capture, a redirect), flushed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # logging's contract: a failing handler reports, never raises into the caller
            self.handleError(record)


class Progress:
    """Line-based progress of long work a person waits on, through a logger: `episodes 12/32 (detail), 40 s,
    ~67 s left`, at most every `every_s` seconds, and always when the last item is done."""

    def __init__(self, logger: logging.Logger, what: str, total: int, every_s: float = 5.0):
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self._logger, self.what, self.total, self.every_s = logger, what, total, every_s
        self._t0 = self._last = time.monotonic()
        self._done = 0

    def __call__(self, done: int, detail: str = "") -> None:
        """Says `done` of `total` if it moved on and `every_s` passed since the last line (or all are done)."""
        now = time.monotonic()
        if done == self._done or (done < self.total and now - self._last < self.every_s):
            return
        self._done, self._last = done, now
        elapsed = now - self._t0
        left = f", ~{elapsed * (self.total - done) / done:.0f} s left" if 0 < done < self.total else ""
        detail = f" ({detail})" if detail else ""
        self._logger.info("%s %d/%d%s, %.0f s%s", self.what, done, self.total, detail, elapsed, left)


def library_level(verbosity: int | None) -> int:
    """Other libraries' level on absl's verbosity scale (-1 warning, 0 info, 1 debug); None: errors only."""
    if verbosity is None:
        return logging.ERROR
    if not isinstance(verbosity, int) or isinstance(verbosity, bool):
        raise ValueError(f"verbosity must be an integer on absl's scale (-1, 0, 1) or None, got {verbosity!r}")
    return {-3: logging.CRITICAL, -2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        verbosity, logging.CRITICAL if verbosity < -3 else logging.DEBUG
    )


def configure(node: str, verbosity: int | None = None) -> None:
    """Sends serl_gs's log records to stdout as `[node] message`; other libraries' at `verbosity` (module doc).

    Called once by an entry point; a second call replaces the first's handler (the node name may change)."""
    if not node or not isinstance(node, str):
        raise ValueError(f"node must be a non-empty name, got {node!r}")
    root_level = library_level(verbosity)
    package = logging.getLogger(PACKAGE)
    for handler in [h for h in package.handlers if isinstance(h, _CurrentStdout)]:
        package.removeHandler(handler)
    handler = _CurrentStdout()
    handler.setFormatter(_NodeFormatter(node))
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if root_level <= logging.DEBUG else logging.INFO)
    package.propagate = False  # our lines once, in our form (not again through absl's or the root's handler)
    logging.getLogger().setLevel(root_level)
    logging.getLogger("absl").setLevel(root_level)  # orbax logs through absl's logger
