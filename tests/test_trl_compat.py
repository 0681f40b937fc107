"""Dependency drift: a TRL whose GRPOTrainer internals DSDR was never tested against is refused at construction,
with a message naming the supported range; an untested version number with compatible internals only warns."""

from __future__ import annotations

import re
import warnings

import pytest
import trl

import dsdr_trl.trainer as trainer_module
from dsdr_trl.trainer import SUPPORTED_TRL, check_trl_internals
from tests.test_trainer import build

REFUSAL = re.escape(f"tested with trl{SUPPORTED_TRL}; install a release in that range (pip install 'trl{SUPPORTED_TRL}')")


def test_installed_trl_is_supported_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_trl_internals()


def test_supported_range_matches_the_package_metadata():
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    pinned = [Requirement(r) for r in requires("dsdr-trl") if Requirement(r).name == "trl"]
    assert len(pinned) == 1 and pinned[0].specifier == SpecifierSet(SUPPORTED_TRL), pinned


@pytest.mark.parametrize("method", ["_calculate_rewards", "_generate_and_score_completions", "_compute_loss", "_get_per_token_logps_and_entropies"])
def test_a_missing_override_point_is_refused(monkeypatch, method):
    monkeypatch.delattr(trl.GRPOTrainer, method)
    with pytest.raises(RuntimeError, match=rf"GRPOTrainer\.{method} is missing\..*{REFUSAL}"):
        check_trl_internals()


def renamed_parameters_trainer():
    class DriftedGRPOTrainer(trl.GRPOTrainer):  # a release where _compute_loss takes (model, batch)
        def _compute_loss(self, model, batch):
            return super()._compute_loss(model, batch)

    return DriftedGRPOTrainer


def test_a_changed_signature_is_refused_when_the_trainer_is_built(monkeypatch, tmp_path):
    monkeypatch.setattr(trainer_module, "GRPOTrainer", renamed_parameters_trainer())
    with pytest.raises(RuntimeError, match=rf"cannot train with trl {re.escape(trl.__version__)}: GRPOTrainer\._compute_loss no longer takes inputs\..*{REFUSAL}"):
        build(tmp_path)


def test_a_changed_log_prob_helper_is_refused(monkeypatch):
    class Drifted(trl.GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, **kwargs):
            raise AssertionError("never called")

    monkeypatch.setattr(trainer_module, "GRPOTrainer", Drifted)
    with pytest.raises(RuntimeError, match=r"_get_per_token_logps_and_entropies no longer takes logits_to_keep"):
        check_trl_internals()


def test_a_trainer_attribute_that_is_no_longer_set_is_refused(monkeypatch, tmp_path):
    original_init = trl.GRPOTrainer.__init__

    def init_without_scale_rewards(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        del self.scale_rewards

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", init_without_scale_rewards)
    with pytest.raises(RuntimeError, match=rf"GRPOTrainer no longer sets scale_rewards\..*{REFUSAL}"):
        build(tmp_path)


@pytest.mark.parametrize("version", ["1.17.0", "1.11.9", "2.0.0"])
def test_an_untested_version_with_compatible_internals_warns(monkeypatch, version):
    monkeypatch.setattr(trl, "__version__", version)
    with pytest.warns(UserWarning, match=rf"tested with trl{re.escape(SUPPORTED_TRL)}; found trl {re.escape(version)}"):
        check_trl_internals()


@pytest.mark.parametrize("version", ["1.12.0", "1.16.0", "1.16.3.dev0"])
def test_versions_in_range_do_not_warn(monkeypatch, version):
    monkeypatch.setattr(trl, "__version__", version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_trl_internals()


@pytest.mark.parametrize("version", ["1.17.0rc1", "1.17.0.dev0", "1.12.0rc1"])
def test_prereleases_outside_the_range_warn(monkeypatch, version):
    # '1.17.0rc1' used to parse as (1, 17) < (1, 17, 0) and pass as tested.
    monkeypatch.setattr(trl, "__version__", version)
    with pytest.warns(UserWarning, match=f"found trl {re.escape(version)}"):
        check_trl_internals()
