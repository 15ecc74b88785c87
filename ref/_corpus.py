"""The committed tokenizer corpus: short multilingual samples used for training, goldens and
cross-checks by every tokenizer family (bpe, wordpiece, unigram, char).

Provenance: every sample below was written for this repository by its authors (prose, code,
numbers and the Chinese sentences are original; the emoji are Unicode code points). No text is
copied from a third-party source, so the corpus carries the repository's licence.

The samples cover what tokenizers get wrong: English with upper- and lower-case contractions,
Chinese (CJK ideographs and full-width punctuation), Python and C code with indentation and
tabs, numbers of every length (digit grouping), emoji including ZWJ sequences, flags and skin
tones, accented Latin, runs of spaces and blank lines, and Windows CRLF line endings.

The families' case generators (in ref/<family>.py) draw nothing from `rng`: every input is a
deterministic function of this text, so the goldens depend on no download.
"""

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

# Texts that cases and cross-checks use beside the samples, not part of CORPUS (so the trained
# vocabularies do not depend on them): Greek with word-final sigma (str.lower() gives ς there,
# per-character lowercasing σ) and BERT special-token names written in running text.
EXTRA = {
    "greek": "ΟΔΥΣΣΕΥΣ ΚΑΙ ΑΧΙΛΛΕΥΣ. Ο λόγος ΤΟΥ ΣΩΚΡΑΤΗ: ΣΟΦΟΣ ΑΝΘΡΩΠΟΣ, όχι ΑΝΟΗΤΟΣ.",
    "bert_special": "[CLS] Hello, world! [SEP] a [MASK] here [UNK] and [PAD]; [cls] [SEP[SEP]]",
}


def sample_text(sample: str) -> str:
    """A named sample, 'corpus' for all of them, 'special' for text with special tokens, or a
    name of EXTRA."""
    if sample in EXTRA:
        return EXTRA[sample]
    if sample == "corpus":
        return CORPUS
    if sample == "special":
        return ("Hello<|endoftext|>world <|fim_prefix|>def f():<|fim_suffix|>\n"
                "    return 1<|fim_middle|> and <|endoftext and |> stay text.")
    return SAMPLES[sample]
