"""The documentation builds offline with zero warnings, and its generated and hand-written references are complete."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def built_html(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx", reason="the docs need the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("furo", reason="the docs need the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("myst_parser", reason="the docs need the docs extra: pip install -e '.[docs]'")
    output = tmp_path_factory.mktemp("html")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", "-q", str(DOCS), str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore::FutureWarning"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stderr[-6000:]}"
    return output


def test_docs_build_without_warnings(built_html):
    for page in ("index", "getting-started", "concepts", "configuration", "paper-to-flags", "api", "reproducing",
                 "performance", "changelog", "howto/multi-gpu", "howto/vllm", "howto/lora", "howto/custom-scorer",
                 "howto/choosing-coefficients", "howto/metrics"):  # fmt: skip
        assert (built_html / f"{page}.html").exists(), page


def test_configuration_table_lists_every_field_dsdr_adds(built_html):
    from trl import GRPOConfig

    from dsdr_trl import DSDRConfig

    inherited = {field.name for field in dataclasses.fields(GRPOConfig)}
    added = [field.name for field in dataclasses.fields(DSDRConfig) if field.name not in inherited]
    page = (built_html / "configuration.html").read_text(encoding="utf-8")
    table = page[page.index("dsdr-config-table") :]
    assert added and all(f'id="config-{name.replace("_", "-")}"' in table for name in added)
    assert "not_a_field" not in table and "learning_rate" not in table.split("</table>")[0]  # GRPOConfig's stay out


def test_concepts_page_states_every_equation_of_the_method():
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    tags = {int(number) for number in re.findall(r"\\tag\{(\d+)\}", text)}
    assert tags == set(range(2, 17))


def test_metrics_page_documents_every_metric_the_trainer_logs():
    source = (REPO / "dsdr_trl" / "trainer.py").read_text(encoding="utf-8")
    logged = set(re.findall(r'"(dsdr/[\w/]+)"', source)) | {
        f"dsdr/{name}/{stat}" for name in ("semantic", "formula", "diversity") for stat in ("mean", "correct_mean")
    }
    page = (DOCS / "howto" / "metrics.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"dsdr/[\w/]+", page))
    assert logged <= documented, sorted(logged - documented)
