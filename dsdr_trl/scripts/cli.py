"""`dsdr-trl`: one console entry point, one module per subcommand.

Each subcommand is a module in `dsdr_trl.scripts` with a `main(argv: list[str] | None) -> int`, registered in
`SUBCOMMANDS` and imported only when its subcommand runs. Each defines its options without importing torch,
transformers or TRL, which it imports only once it runs, so that every `--help` answers in well under a second.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .. import __version__

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("dsdr_trl.scripts.train", "Train a model with DSDR from a YAML recipe and/or command-line flags"),
    "eval": ("dsdr_trl.scripts.eval", "Pass@1, Avg@k, Pass@k and diversity@k of models on math benchmarks"),
    "recipes": ("dsdr_trl.scripts.recipes", "List the shipped recipes, print one, or copy one to a file"),
    "demo": ("dsdr_trl.scripts.demo", "Train a tiny model with DSDR on CPU, offline, printing every DSDR quantity"),
}
"""Subcommand name -> (module with `main(argv)`, one-line description)."""


def usage() -> str:
    """The top-level help text, listing the registered subcommands."""
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"  {name.ljust(width)}  {description}" for name, (_, description) in SUBCOMMANDS.items()]
    return (
        "usage: dsdr-trl <subcommand> [options]\n"
        "       dsdr-trl --version\n\n"
        "DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) for TRL's GRPOTrainer.\n\n"
        "subcommands:\n" + "\n".join(lines) + "\n\nRun `dsdr-trl <subcommand> --help` for the options of one."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `dsdr-trl <subcommand> ...` to the subcommand's `main`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"dsdr-trl {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"dsdr-trl: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
