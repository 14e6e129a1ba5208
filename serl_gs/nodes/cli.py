"""Entry-point plumbing shared by the node mains: absl flags, and bad input as a one-line error."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None]) -> None:
    """Runs `main` under absl; a ValueError or a missing file exits with status 2 and a message naming it."""
    from absl import app, flags

    define_flags()
    if any(arg in ("-h", "--help", "--helpshort") for arg in sys.argv[1:]):
        # absl exits with status 1 after help; asking for help is not an error.
        main_module = sys.modules["__main__"]
        print((main_module.__doc__ or "").strip() + "\n")
        print(flags.FLAGS.main_module_help())
        sys.exit(0)

    def guarded(argv: list[str]) -> None:
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # libraries (orbax) log every save at INFO
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(guarded)
