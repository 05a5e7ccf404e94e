"""``modelyard``: the operator and its offline tools. Bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelyard import __version__
from modelyard.errors import Infeasible, UserError
from modelyard.sandbox.cli import register as register_sandbox

from . import audit, offline, operator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelyard",
        description="Kubernetes operator for enterprise LLM deployments, and its offline tools.",
    )
    parser.add_argument("--version", action="version", version=f"modelyard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    offline.register(commands)
    audit.register(commands)
    operator.register(commands)
    register_sandbox(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (UserError, Infeasible) as exc:
        print(f"modelyard {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
