"""Entry-point plumbing shared by the node mains: absl flags, and bad input as a one-line error."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None]) -> None:
    """Runs `main` under absl; a ValueError or a missing file exits with status 2 and a message naming it."""
    from absl import app

    define_flags()

    def guarded(argv: list[str]) -> None:
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # libraries (orbax) log every save at INFO
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(guarded)
