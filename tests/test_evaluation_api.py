"""dsdr_trl.evaluation as a package: every public name of the former single module is still importable from it,
the pure modules load neither torch nor transformers, the heavy ones load on first use, and imports point one way."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsdr_trl import evaluation

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "dsdr_trl" / "evaluation"

# The public names of dsdr_trl/evaluation.py before it became a package (commit 8aacdad), listed by hand from it.
PUBLIC_NAMES_OF_THE_FORMER_MODULE = {
    "BENCHMARK_TITLES", "DEFAULT_ENCODER", "EvaluationProtocol", "Generation", "LazyScorer", "PASS1_REGIME",
    "PLOT_FILE", "PassAtKCallback", "Problem", "RESULTS_FILE", "SAMPLED_REGIME", "SAMPLES_FILE", "SampleStore",
    "Sampler", "SamplingSettings", "TABLE_FILE", "TransformersSampler", "VLLMSampler", "WorkItem",
    "average_over_benchmarks", "benchmark_title", "chunks", "correctness_metrics", "default_device", "default_ks",
    "derivation_signature", "diversity_of_correct", "draw_samples", "find_adapter", "generate_missing", "load_model",
    "load_problems", "load_tokenizer", "make_sampler", "markdown_table", "pass_at_k", "plan_work", "plot_pass_at_k",
    "prompt_fingerprint", "render_prompt", "resolve_backend", "run_evaluation", "sample_key", "sample_seed", "shard",
    "stop_token_ids", "summarize",
}  # fmt: skip

# Each module may import only modules above it in this list (the package's own layering).
LAYERS = ["protocol", "metrics", "reports", "store", "loading", "sampling", "run", "callback"]
PURE_MODULES = ["protocol", "metrics", "reports"]
HEAVY = ("torch", "transformers", "trl")


def test_every_public_name_of_the_former_module_is_still_importable():
    assert len(PUBLIC_NAMES_OF_THE_FORMER_MODULE) == 47
    missing = sorted(PUBLIC_NAMES_OF_THE_FORMER_MODULE - set(evaluation.__all__))
    assert not missing, missing
    for name in sorted(PUBLIC_NAMES_OF_THE_FORMER_MODULE):
        exec(f"from dsdr_trl.evaluation import {name}", {})  # the spelling users wrote


def _defined_public_names(module_name: str) -> set[str]:
    """The public names a submodule defines at top level (classes, functions, constants), read from its source."""
    tree = ast.parse((PACKAGE_DIR / f"{module_name}.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return {name for name in names if not name.startswith("_")}


def test_all_lists_exactly_the_public_names_of_the_submodules_and_each_resolves_to_its_definition():
    defined = {name: module_name for module_name in LAYERS for name in _defined_public_names(module_name)}
    assert sum(len(_defined_public_names(module_name)) for module_name in LAYERS) == len(defined), "defined twice"
    assert sorted(evaluation.__all__) == sorted(defined)
    for name, module_name in defined.items():
        submodule = importlib.import_module(f"dsdr_trl.evaluation.{module_name}")
        assert getattr(evaluation, name) is getattr(submodule, name), name
    assert set(evaluation.__all__) <= set(dir(evaluation))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'pass_at_kk'"):
        evaluation.pass_at_kk  # noqa: B018
    with pytest.raises(ImportError):
        exec("from dsdr_trl.evaluation import pass_at_kk", {})


def test_type_checkers_see_the_same_lazy_names_as_the_runtime():
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        names = {alias.name for alias in node.names}
        assert names == set(evaluation._LAZY_MODULES[node.module]), node.module
    assert {node.module for node in block.body} == set(evaluation._LAZY_MODULES)


def _imported_siblings(module_name: str) -> set[str]:
    tree = ast.parse((PACKAGE_DIR / f"{module_name}.py").read_text(encoding="utf-8"))
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is not None
    }


@pytest.mark.parametrize("module_name", LAYERS)
def test_imports_point_down_the_layers(module_name):
    above = set(LAYERS[: LAYERS.index(module_name)])
    assert _imported_siblings(module_name) <= above


def test_every_module_of_the_package_is_layered():
    modules = {path.stem for path in PACKAGE_DIR.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


def _run_with_fresh_imports(code: str) -> dict:
    """Run `code` in a new interpreter and return the JSON it prints.

    `dsdr_trl` is put in sys.modules as a bare package, so what is measured is what the evaluation package imports,
    not what the top-level package's own `__init__` imports.
    """
    prelude = (
        "import json, sys, types\n"
        f"package = types.ModuleType('dsdr_trl'); package.__path__ = [{str(REPO / 'dsdr_trl')!r}]\n"
        "sys.modules['dsdr_trl'] = package\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_pure_metrics_run_without_torch_or_transformers():
    code = """
from dsdr_trl.evaluation.metrics import correctness_metrics, diversity_of_correct, pass_at_k

class Scores:  # what a DiversityScorer returns, without tensors
    def __init__(self, values):
        self.semantic = self.formula = types.SimpleNamespace(mean=lambda: sum(values) / len(values))

metrics = correctness_metrics([[True, False], [False, False]], avg_k=2, ks=(1, 2))
diversity = diversity_of_correct([["$x=1$", "$y=2$"]], lambda texts, group_size: Scores([0.5] * group_size))
print(json.dumps({"loaded": [m for m in ("torch", "transformers", "trl") if m in sys.modules],
                  "pass@2": metrics["pass@2"], "derivations": diversity["derivations"]}))
"""
    measured = _run_with_fresh_imports(code)
    assert measured == {"loaded": [], "pass@2": 0.5, "derivations": 2}


def test_the_package_loads_the_sampling_stack_only_when_a_name_needs_it():
    code = """
from dsdr_trl.evaluation import DEFAULT_ENCODER, TABLE_FILE, EvaluationProtocol, default_ks, pass_at_k
EvaluationProtocol(num_samples=8, avg_k=8, ks=default_ks(8))
after_pure = [m for m in ("torch", "transformers", "trl") if m in sys.modules]
from dsdr_trl.evaluation import run_evaluation
print(json.dumps({"after_pure": after_pure, "after_run": "torch" in sys.modules}))
"""
    measured = _run_with_fresh_imports(code)
    assert measured == {"after_pure": [], "after_run": True}


def test_the_api_page_documents_every_module_of_the_package():
    page = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    for module_name in LAYERS:
        assert f".. automodule:: dsdr_trl.evaluation.{module_name}\n" in page, module_name
