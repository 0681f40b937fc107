"""`dsdr-trl recipes`: list the shipped recipes, print one, copy one to a file to edit, or write the tiny CPU
recipe's model and data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..recipes import recipe_names, recipe_path, recipe_title


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsdr-trl recipes",
        description="The recipes shipped with dsdr-trl. Train from one with `dsdr-trl train --config <name>`, "
        "or copy it, edit it and train with `dsdr-trl train --config <file>`.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,show,copy,tiny-setup}")
    actions.add_parser("list", help="the name and title of every recipe")
    show = actions.add_parser("show", help="print a recipe")
    show.add_argument("name", help="a name from `dsdr-trl recipes list`, e.g. qwen3-1.7b/dsdr")
    copy = actions.add_parser("copy", help="write a recipe to a file")
    copy.add_argument("name", help="a name from `dsdr-trl recipes list`, e.g. tiny_cpu")
    copy.add_argument("destination", nargs="?", help="file or existing folder (default: ./<last part of name>.yaml)")
    copy.add_argument("--force", action="store_true", help="overwrite an existing file")
    setup = actions.add_parser("tiny-setup", help="write the tiny_cpu recipe's model and data into a folder")
    setup.add_argument("directory", nargs="?", default=".", help="where tiny-model/ and tiny-math.jsonl go (default: .)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "list":
        names = recipe_names()
        width = max(len(name) for name in names)
        print("\n".join(f"{name.ljust(width)}  {recipe_title(name)}" for name in names))
        return 0
    if args.action == "tiny-setup":
        return tiny_setup(Path(args.directory))
    try:
        source = recipe_path(args.name)
    except ValueError as error:
        parser.error(str(error))
    if args.action == "show":
        sys.stdout.write(source.read_text(encoding="utf-8"))
        return 0
    destination = Path(args.destination or source.name)
    if destination.is_dir():
        destination /= source.name
    if destination.exists() and not args.force:
        parser.error(f"{destination} exists; pass --force to overwrite it.")
    destination.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    if source.parent.name == "accelerate":  # a launcher configuration, not a training recipe
        launch = f"accelerate launch --config_file {destination} -m dsdr_trl.scripts.train ..."
        print(f"{destination}  (launch with: {launch})")
    else:
        print(f"{destination}  (train with: dsdr-trl train --config {destination})")
    return 0


def tiny_setup(directory: Path) -> int:
    """Write the tiny_cpu recipe's inputs into `directory` and print the command that trains from them."""
    from transformers.utils import logging as transformers_logging

    from .._console import silence_upstream_deprecations
    from ..recipes.tiny import write_tiny_setup

    transformers_logging.disable_progress_bar()  # a bar for writing a 1 MB model is noise
    silence_upstream_deprecations()
    directory.mkdir(parents=True, exist_ok=True)
    model_dir, data_file = write_tiny_setup(directory)
    print(f"wrote {model_dir} and {data_file}\ntrain from {directory}:\n  dsdr-trl train --config tiny_cpu")
    return 0
