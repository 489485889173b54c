"""``comfytest-report``: work with saved reports and history files, without running tests.

One module, one table of subcommands (``COMMANDS``): each row names the subcommand, adds its
arguments to its parser and runs it. Exit codes: 0 done, 2 bad input (one message on stderr
naming the file and how to fix it).

    comfytest-report trend HISTORY -o DIR [--last N]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfytest.errors import ComfyTestError, ConfigError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- trend ------------------------------------------------------------------------------------


def _trend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("history", type=Path, help="the history file written by --comfy-history (JSON lines)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for trend.html (self-contained) and trend.md")
    parser.add_argument("--last", type=int, default=10, metavar="N",
                        help="sessions in the markdown table (default 10; 0: all)")


def _trend(args: argparse.Namespace) -> int:
    from comfytest.trend import load_history, render_markdown, render_page

    source: Path = args.history
    if not source.is_file():
        raise ConfigError(f"history file {source} does not exist: pass the file given to --comfy-history")
    try:
        history = load_history(source)
    except OSError as exc:
        raise ConfigError(f"cannot read the history file {source}: {exc.strerror}") from None
    for line in history.skipped:
        print(f"comfytest-report: {line}", file=sys.stderr)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    (out / "trend.html").write_text(render_page(history, str(source)), encoding="utf-8")
    (out / "trend.md").write_text(render_markdown(history, args.last), encoding="utf-8")
    print(f"{len(history.entries)} session(s), {len(history.tests())} test(s): "
          f"{out / 'trend.html'}, {out / 'trend.md'}")
    return 0


#: every subcommand; add a row for a new one
COMMANDS: tuple[Command, ...] = (
    Command("trend", "render a history file as charts (HTML) and a table (markdown)", _trend_arguments, _trend),
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="comfytest-report",
                                  description="Work with saved comfytest reports and history files, without running tests.")
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subs.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ComfyTestError as exc:
        print(f"comfytest-report {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
