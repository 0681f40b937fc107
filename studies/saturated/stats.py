"""Per-prompt outcomes and 95 % bootstrap intervals over prompts and seeds, paired differences included.

A measurement is a matrix X[s, p]: the value of one outcome for seed s on held-out prompt p. The reported number is
its grand mean. The interval resamples seeds and prompts independently with replacement (a two-way bootstrap), so it
carries both sources of noise: RL variability between seeds and sampling variability between prompts. It errs on the
wide side for noise proper to one (seed, prompt) cell, which also moves that seed's and that prompt's means: in
expectation such noise counts three times instead of once (Owen, "The pigeonhole bootstrap", 2007); on independent
cells the interval is about sqrt(3) times too wide, seed and prompt effects are counted once. A paired
difference (DSDR - GRPO) is the same bootstrap on D[s, p] = X_dsdr[s, p] - X_grpo[s, p]: seed s of both methods shares
its prompt order and warm start, and prompt p is the same prompt, so pairing removes what the two runs share.
"""

from __future__ import annotations

import numpy as np

from dsdr_trl.evaluation import pass_at_k

AUC_KS = (1, 2, 4, 8, 16, 32, 64)  # the primary outcome: the mean of Pass@k over these k


def pass_at_k_auc(num_samples: int, num_correct: int, ks: tuple[int, ...] = AUC_KS) -> float:
    """Mean over ks of the unbiased Pass@k from `num_correct` correct among `num_samples` samples (ks <= n)."""
    if max(ks) > num_samples:
        raise ValueError(f"Pass@{max(ks)} needs at least {max(ks)} samples, got {num_samples}.")
    return float(np.mean([pass_at_k(num_samples, num_correct, k) for k in ks]))


def bootstrap_mean(values: np.ndarray, num_resamples: int = 4000, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Grand mean of values[s, p] and its 95 % percentile interval, resampling seeds (rows) and prompts (columns).

    Each resample draws S rows and P columns with replacement; its mean is w_s^T X w_p with w the draw counts divided
    by S and P, so no resampled matrix is ever built.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"values must be a non-empty [seeds, prompts] matrix, got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite.")
    num_seeds, num_prompts = values.shape
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=num_resamples) / num_seeds
    prompt_weights = rng.multinomial(num_prompts, np.full(num_prompts, 1.0 / num_prompts), size=num_resamples)
    means = np.einsum("bs,sp,bp->b", seed_weights, values, prompt_weights / num_prompts)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), (float(low), float(high))


def summarize(values: np.ndarray, num_resamples: int = 4000) -> dict:
    """{"mean": x, "ci95": [lo, hi]}, the form of summary.json."""
    mean, (low, high) = bootstrap_mean(values, num_resamples)
    return {"mean": mean, "ci95": [low, high]}


def paired_difference(treatment: np.ndarray, control: np.ndarray, num_resamples: int = 4000) -> dict:
    """summarize(treatment - control) for matrices paired by seed (rows) and prompt (columns)."""
    treatment, control = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if treatment.shape != control.shape:
        raise ValueError(f"paired matrices must have one shape, got {treatment.shape} and {control.shape}.")
    return summarize(treatment - control, num_resamples)
