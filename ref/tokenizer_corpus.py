"""The committed tokenizer corpus: short multilingual samples used for training and goldens.

Provenance: every sample below was written for this repository by its authors (prose, code,
numbers and the Chinese sentences are original; the emoji are Unicode code points). No text is
copied from a third-party source, so the corpus carries the repository's licence.

The samples cover what tokenizers get wrong: English with upper- and lower-case contractions,
Chinese (CJK ideographs and full-width punctuation), Python and C code with indentation and
tabs, numbers of every length (digit grouping), emoji including ZWJ sequences, flags and skin
tones, accented Latin, runs of spaces and blank lines, and Windows CRLF line endings.

Case generators (`*_case`, called by the goldens as fn(rng, **dims)) draw nothing from `rng`:
every input is a deterministic function of this text, so the goldens depend on no download.
"""
from collections import Counter
from functools import lru_cache

import numpy as np

SAMPLES = {
    "english": (
        "The quick brown fox doesn't jump over the lazy dog; it walks around it. "
        "We'll see whether they're right, and I'd say it's worth a look.\n"
        "SHE SAID: \"I'M NOT SURE WE'LL MAKE IT, BUT DON'T WAIT FOR US.\"\n"
        "THE SIGNS READ 'STOP', 'STAY' AND 'STEP BACK'; THE TESTS STILL PASSED.\n"
        "MR. O'DONNELL MET MS. O'STANLEY AND MRS. O'TOOLE; o'donnell was late.\n"
        "Tokenizers split text into pieces, then merge bytes into tokens. "
        "Lower-case, UPPER-CASE and Mixed-Case words all appear here."
    ),
    "accents": (
        "Café crème, naïve façade, jalapeño, Ångström, Øresund, Straße, "
        "résumé vs resume, ÉCOLE and école, Zürich, São Paulo, Dvořák."
    ),
    "chinese": (
        "我们在这里测试分词器。中文没有空格，所以每个汉字都可能成为一个词元。"
        "今天天气很好，我们去公园散步吧！数字１２３和ABC混在一起。"
        "机器学习模型需要把文本变成整数序列。"
    ),
    "japanese_korean": "ひらがなとカタカナ、そして漢字。한국어 문장도 조금 넣습니다.",
    "code": (
        "def merge(ids, pair, new_id):\n"
        "    out = []\n"
        "    i = 0\n"
        "    while i < len(ids):\n"
        "        if ids[i:i + 2] == list(pair):\n"
        "            out.append(new_id)\n"
        "            i += 2\n"
        "        else:\n"
        "            out.append(ids[i]); i += 1\n"
        "    return out\n"
        "\n"
        "int main(void) {\n"
        "\tfor (int k = 0; k < 10; ++k) { printf(\"%d\\n\", k * k); }\n"
        "\treturn 0;  // done\n"
        "}\n"
    ),
    "numbers": (
        "1 12 123 1234 12345 123456 1234567 12345678 3.14159265 -0.5e-10 "
        "1,000,000 2026-11-23 07:45:00 $100.50!! 0x7F 1e9 ٣٤٥ ½ ²"
    ),
    "emoji": (
        "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇯🇵🇫🇷 ❤️ 🏳️‍🌈 ✨✨✨ and text after 🙂."
    ),
    "whitespace": (
        "a   b\t\tc \t d\n\n\n  e     \n   \n f  \u00a0 g\u3000h\n\n  y  "
    ),
    "crlf": "first line\r\nsecond line\r\n\r\nafter a blank line\r\n  indented\r\nend\r\n",
}

# Samples joined into one training text (fixed order).
CORPUS = "\n".join(SAMPLES[name] for name in SAMPLES)

SPECIAL_TOKENS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]

# A small vocabulary keeps the goldens small while still merging within words.
N_MERGES = 300


@lru_cache(maxsize=4)
def trained_merges(pattern: str = "cl100k", n_merges: int = N_MERGES) -> np.ndarray:
    """Merges (M, 2) trained by the reference on CORPUS; computed once per process."""
    from llmref.ref.bpe import train

    return np.asarray(train(CORPUS, n_merges, pattern=pattern), dtype=np.int64).reshape(-1, 2)


def sample_text(sample: str) -> str:
    """A named sample, 'corpus' for all of them, or 'special' for text with special tokens."""
    if sample == "corpus":
        return CORPUS
    if sample == "special":
        return ("Hello<|endoftext|>world <|fim_prefix|>def f():<|fim_suffix|>\n"
                "    return 1<|fim_middle|> and <|endoftext and |> stay text.")
    return SAMPLES[sample]


def bpe_encode_case(rng, sample, train_pattern="cl100k"):
    """Inputs of a bpe_encode case: a sample and the merges trained on the corpus."""
    return {"text": sample_text(sample), "merges": trained_merges(train_pattern)}


def bpe_decode_case(rng, sample):
    """Inputs of a bpe_decode case: the reference's ids for a sample, or raw byte ids that
    split multi-byte UTF-8 characters ('split_utf8')."""
    from llmref.ref.bpe import bpe_encode

    merges = trained_merges()
    if sample == "split_utf8":
        emoji = "😀".encode("utf-8")  # 4 bytes; byte ids are the byte values
        ids = list(b"ok ") + list(emoji[:2]) + list(b" ") + list(emoji) + list(emoji[1:])
        return {"ids": np.asarray(ids, dtype=np.int64), "merges": merges}
    ids = bpe_encode(text=sample_text(sample), merges=merges, special_tokens=SPECIAL_TOKENS,
                     allowed_special=SPECIAL_TOKENS, disallowed_special=[])
    return {"ids": ids, "merges": merges}


def bpe_train_case(rng, sample):
    """Inputs of a bpe_train case: the training text."""
    return {"text": sample_text(sample)}


WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@lru_cache(maxsize=2)
def wordpiece_vocab(cased: bool = False) -> str:
    """vocab.txt contents built from CORPUS (one token per line), deterministic:
    the specials; every character of the basic-tokenised words; '##' + every character that
    occurs inside a word at least twice in the corpus (so a rare inner character makes its word
    [UNK]); the words occurring at least twice; the 3-character stems of longer words with
    '##' + the rest; a few common continuation suffixes."""
    from collections import Counter

    from llmref.ref.wordpiece import basic_tokenize

    words = Counter(basic_tokenize(CORPUS, lowercase=not cased))
    inner = Counter(ch for w, n in words.items() for ch in w[1:] for _ in range(n))
    tokens = list(WORDPIECE_SPECIALS)
    tokens += sorted({ch for w in words for ch in w})
    tokens += sorted("##" + ch for ch, n in inner.items() if n >= 2)
    tokens += sorted(w for w, n in words.items() if n >= 2 and len(w) > 1)
    tokens += sorted({w[:3] for w in words if len(w) >= 6})
    tokens += sorted({"##" + w[3:] for w in words if len(w) >= 6})
    tokens += ["##s", "##ed", "##ing", "##er", "##ly"]
    unique = list(dict.fromkeys(tokens))  # first occurrence wins; order is the id
    return "\n".join(unique) + "\n"


def wordpiece_case(rng, sample, cased=False):
    """Inputs of a wordpiece_encode case: a sample and the corpus vocabulary."""
    return {"text": sample_text(sample), "vocab": wordpiece_vocab(bool(cased))}


def char_case(rng, sample):
    """Inputs of a char_encode case: a sample and the characters of the English and code
    samples as the vocabulary (so Chinese, emoji and accents are unknown)."""
    vocab = "".join(sorted(set(SAMPLES["english"] + SAMPLES["code"])))
    return {"text": sample_text(sample), "vocab": vocab}


@lru_cache(maxsize=2)
def unigram_vocab(byte_pieces: bool = False) -> tuple:
    """(pieces joined by newlines, scores, types) of a unigram vocabulary estimated from
    CORPUS without EM, deterministic: <unk>, <s>, </s>, optionally the 256 byte pieces, then
    every character occurring at least twice in the normalised corpus and every normalised
    word ('▁' + word) occurring at least twice, every character pair occurring at least four
    times that does not end in '▁', plus the digit groups '12', '123', '45'; a
    piece's score is log(count / total count) of its occurrences as a substring."""
    import math

    from llmref.ref.unigram import BYTE, CONTROL, NORMAL, UNKNOWN, normalize

    text = normalize(CORPUS.replace("\n", " ").replace("\r", " ").replace("\t", " "))
    chars = Counter(text)
    words = Counter("\u2581" + w for w in text.split("\u2581") if w)
    candidates = sorted({ch for ch, n in chars.items() if n >= 2}
                        | {w for w, n in words.items() if n >= 2 and len(w) > 1}
                        | {p for p, n in Counter(map("".join, zip(text, text[1:]))).items()
                           if n >= 4 and not p.endswith("\u2581")}
                        | {"12", "123", "45"})
    counts = {p: text.count(p) for p in candidates}
    total = sum(counts.values())
    pieces = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    if byte_pieces:
        pieces += [f"<0x{b:02X}>" for b in range(256)]
        types += [BYTE] * 256
    scores = [0.0] * len(pieces)
    for p in sorted(candidates, key=lambda p: (-counts[p], p)):
        pieces.append(p)
        types.append(NORMAL)
        scores.append(math.log(counts[p] / total))
    return "\n".join(pieces), np.asarray(scores), np.asarray(types, dtype=np.int32)


def unigram_case(rng, sample, byte_pieces=0):
    """Inputs of a unigram_encode case: a sample and the corpus vocabulary."""
    pieces, scores, types = unigram_vocab(bool(byte_pieces))
    return {"text": sample_text(sample), "pieces": pieces, "scores": scores, "types": types}
