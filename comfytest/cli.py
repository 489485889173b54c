"""The ``comfytest`` command: one entry point for the commands a suite's author runs by hand.

``comfytest init``, ``comfytest embedded``, ``comfytest node`` and ``comfytest report`` dispatch to the command of each concern; the older names
``comfytest-embedded``, ``comfytest-node`` and ``comfytest-report`` stay as aliases of the same
functions. Running the tests is pytest's job: ``pytest`` with the plugin installed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module, what it does); each module has main(argv, prog) -> exit code
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("comfytest.plugin.packinit", "in a node pack's repository: pytest config, scaffolded workflows, a CPU CI workflow"),
    "embedded": ("comfytest.comfy.embedded", "install or locate the CPU ComfyUI comfytest starts by default"),
    "node": ("comfytest.plugin.scaffold", "scaffold a workflow test for node classes, from a server's /object_info"),
    "report": ("comfytest.report.cli", "work with saved reports and history: trend pages, merging shard reports"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return ("usage: comfytest COMMAND [ARGS...]\n\nRun workflow tests with pytest; these commands "
            "prepare and inspect them:\n\n" + "\n".join(lines)
            + "\n\n'comfytest COMMAND --help' describes a command.")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from comfytest import __version__
        print(f"comfytest {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"comfytest: unknown command {name!r}; the commands are {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    run: Callable[..., int] = importlib.import_module(COMMANDS[name][0]).main
    return run(rest, prog=f"comfytest {name}")


if __name__ == "__main__":
    sys.exit(main())
