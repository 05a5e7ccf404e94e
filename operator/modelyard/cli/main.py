"""``modelyard``: the operator and its offline tools. Bad input is one line on stderr and exit 2.

Commands that are not part of the operator come from other distributions, through the ``modelyard.commands``
entry point group: ``sandbox`` (development tooling) from ``modelyard-sandbox``, which neither the wheel nor
the image ships. Such a command is looked up only when it is used, and is handed the arguments after its
name; when its distribution is not installed, the command says how to install it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from modelyard import __version__
from modelyard.errors import Infeasible, UserError

from . import audit, offline, operator

#: entry point group of the commands other distributions add
COMMANDS_GROUP = "modelyard.commands"
#: command -> (help, how to install the distribution that provides it)
PLUGINS = {
    "sandbox": (
        "local control plane with simulated GPU nodes and one real node (development tooling)",
        "install modelyard-sandbox from a clone of the repository: pip install ./sandbox (make install does)",
    ),
}


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
    for name, (help_text, _) in PLUGINS.items():
        # its own parser (in its distribution) reads its arguments, --help included
        plugin = commands.add_parser(name, help=help_text, add_help=False)
        plugin.set_defaults(func=_run_plugin, plugin=name)
    return parser


def _run_plugin(args: argparse.Namespace) -> int:
    found = entry_points(group=COMMANDS_GROUP, name=args.plugin)
    if not found:
        raise UserError(f"not installed: {PLUGINS[args.plugin][1]}")
    command: Callable[[list[str]], int] = next(iter(found)).load()
    return command(args.plugin_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and "plugin" not in args:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.plugin_args = rest
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
