"""Release metadata that no other test reads: what the wheel ships and which Python versions it claims.
(.ci/run builds the sdist and the wheel, installs the wheel in a clean venv and runs it.)"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from dsdr_trl.recipes import RECIPES_DIR

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_package_data_ships_every_recipe_file():
    # A recipe in a new sub-folder would be missing from the wheel unless a glob covers it.
    globs = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["dsdr_trl.recipes"]
    shipped = {path for pattern in globs for path in RECIPES_DIR.glob(pattern)}
    data_files = {path for path in RECIPES_DIR.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")}
    assert data_files and data_files == shipped


def test_classifiers_name_the_python_running_the_tests():
    # CI runs the suite on one Python: the classifiers must name it (and a new CI Python must be added there).
    classifiers = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["classifiers"]
    assert f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}" in classifiers
