"""Entry point: write a new shared secret file for transport authentication.

    python -m serl_gs.transport.secret ~/.serl_gs/transport.secret

Copy the file to the learner and every actor node, then pass it as `AuthConfig(secret_file=...)`
(the nodes' `--auth_secret_file` flag).
"""

from __future__ import annotations

import argparse

from serl_gs.transport.auth import write_secret_file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="file to create (never overwritten; mode 600)")
    args = parser.parse_args(argv)
    write_secret_file(args.path)
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
