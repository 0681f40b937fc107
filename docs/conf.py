"""Sphinx configuration of the dsdr-trl documentation. Builds offline:

    sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the package, from the checkout
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # autodoc imports trl/transformers; nothing may be downloaded

import dsdr_trl  # noqa: E402

project = "dsdr-trl"
author = "dsdr-trl developers"
copyright = "2026, dsdr-trl developers"
release = dsdr_trl.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Google-style "Args:" / "Returns:" sections of our docstrings
    "sphinx.ext.mathjax",
    "dsdr_config_table",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"dsdr-trl {release}"
html_static_path = ["_static"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Nitpicky mode resolves every cross-reference. Types from other projects cannot resolve without intersphinx, which
# would fetch inventories over the network; they are listed here instead.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(torch|trl|transformers|datasets|peft|sentence_transformers|accelerate|numpy|collections)\..*"),
    ("py:class", r"(typing|collections\.abc|pathlib|os)\..*"),
    ("py:class", r"(Tensor|Dataset|PreTrainedModel|PreTrainedTokenizerBase|TrainerCallback|GRPOConfig|GRPOTrainer)"),
    ("py:class", r"(Path|Sequence|Set|Callable|Iterator|Iterable|Any|Literal|Mapping|Protocol|AbstractSet)"),
    ("py:class", r"(optional|default|callable|function|ContextManager|Generator)"),
    ("py:.*", r"dsdr_trl\..*\._.*"),  # private helpers named in signatures
]

# Napoleon reads Google-style sections with a type before a colon; a sentence there ("the verifier and the ...") is
# not a type. Real type names never contain a space.
nitpick_ignore_regex += [("py:class", r".*\s.*"), ("py:class", r"(dsdr_trl\.scorer\.)?FormulaExtractor")]


def adapt_docstring(app, what, name, obj, options, lines):
    """Our docstrings are written to read well as plain text and in TRL's Markdown-flavoured style; two things in
    them mean something else in reStructuredText and are adapted before napoleon parses them."""
    # `|P|` (the size of a set) would be a substitution reference.
    lines[:] = [line.replace("|", r"\|") for line in lines]
    # DSDRConfig documents its fields in TRL's format ("> Parameters of ..." group headers), which napoleon cannot
    # parse; the configuration page renders the same fields as a table from their help texts.
    if what == "class" and name.endswith("DSDRConfig") and "Parameters:" in [line.strip() for line in lines]:
        cut = [line.strip() for line in lines].index("Parameters:")
        lines[cut:] = ["The parameters DSDR adds are listed, with their paper symbols, in :doc:`configuration`."]


def setup(app):
    app.connect("autodoc-process-docstring", adapt_docstring, priority=400)  # before napoleon (500)
