"""The recipes shipped with dsdr-trl, by name: the paper's runs (`<model>/<method>`, e.g. `qwen3-1.7b/dsdr`), the
`accelerate launch` configs (`accelerate/<name>`) and a tiny CPU recipe (`tiny_cpu`).

A name is the file's path below this package without `.yaml`. `dsdr-trl recipes list|show|copy` and
`dsdr-trl train --config <name>` read them from here, so they work from any directory after `pip install`.
"""

from __future__ import annotations

import re
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_names() -> list[str]:
    """Every shipped recipe's name, sorted."""
    return sorted(path.relative_to(RECIPES_DIR).with_suffix("").as_posix() for path in RECIPES_DIR.rglob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The file of the shipped recipe `name` (`.yaml` optional); a `ValueError` listing the names if none."""
    stem = name.removesuffix(".yaml")
    if stem not in recipe_names():
        raise ValueError(f"No shipped recipe is named {name!r}; the recipes are: {', '.join(recipe_names())}.")
    return RECIPES_DIR / f"{stem}.yaml"


def recipe_title(name: str) -> str:
    """What the recipe is: the first sentence of its leading comment (see `first_sentence`)."""
    return first_sentence(recipe_path(name).read_text(encoding="utf-8"))


def first_sentence(text: str) -> str:
    """The first sentence of the comment that `text` begins with: its first line, continued on the next lines while
    a line ends in `,`, `;` or `:`, and cut at a full stop followed by a capital (not "Sec. 3.2")."""
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.removeprefix("#").strip())
    if not comment:
        return ""
    sentence, rest = comment[0], comment[1:]
    while sentence.endswith((",", ";", ":")) and rest:
        sentence = f"{sentence} {rest.pop(0)}"
    return re.split(r"(?<=\.)\s+(?=[A-Z])", sentence)[0]
