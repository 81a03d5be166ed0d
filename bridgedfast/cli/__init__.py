"""The `bridgedfast` command (also `python -m bridgedfast`).

Each sub-command lives in `bridgedfast/cli/<name>.py` and provides HELP (one line),
`add_arguments(parser)` and `run(args) -> int`; a step's options come from its configuration's
declarations (`bridgedfast.options`), so the flags, their defaults and help are never written
twice. Heavy imports happen inside `run`, so `--help` stays fast. Errors a user can cause (ValueError, FileNotFoundError, a missing
optional backend) print one line naming the problem and exit with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

COMMANDS = ["info", "pack", "invert", "generate", "filter", "train", "run", "bench", "demo", "world"]

EXIT_USAGE = 2


class CLIError(Exception):
    """A problem with the user's arguments or input: printed as one line, exit code 2."""


def check_output(path: str, what: str, *, folder: bool, store_ok: bool = False):
    """The output path `path` (flag `what`) checked before a command does any work (see
    `bridgedfast.files.check_output_path`): an existing part of it that is a file where a folder
    must be, a folder where a file goes, or a path inside an image store (or, unless `store_ok`:
    the output is resumed as a store, an image store itself) is one clear error line."""
    from ..data.format import HEADER_FILE
    from ..files import check_output_path

    return check_output_path(path, what, folder=folder, marker=HEADER_FILE, marker_what="an image store",
                             marker_ok=store_ok)


def _load_commands() -> dict[str, ModuleType]:
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    return modules


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    from .. import __version__
    from ..options import HelpFormatter, RawHelpFormatter

    parser = argparse.ArgumentParser(
        prog="bridgedfast",
        description="Synthetic images for transfer learning, fast: pack real images into a store, learn the "
        "dataset's style token, generate synthetic images with Stable Diffusion, and fine-tune with bridged "
        "transfer. Run `bridgedfast COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"bridgedfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _load_commands()
    for name, mod in modules.items():
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=RawHelpFormatter if getattr(mod, "RAW_DESCRIPTION", False) else HelpFormatter,
        )
        mod.add_arguments(p)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    from ..optional import MissingDependency

    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(modules[args.command].run(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, MissingDependency) as exc:
        print(f"bridgedfast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"bridgedfast {args.command}: interrupted", file=sys.stderr)
        return 130
