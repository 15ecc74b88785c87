"""Differential fuzzing of llmref's tokenizers against the libraries they follow, with shrinking.

    llmref tokenizers fuzz --against tiktoken cl100k_base
    llmref tokenizers fuzz --against tokenizers path/to/tokenizer.json --examples 2000
    llmref tokenizers fuzz --against sentencepiece path/to/spm.model

Hypothesis generates Unicode text (arbitrary code points, a hostile alphabet of digits,
apostrophes, whitespace runs, CJK, emoji and combining marks, and strings of the committed
corpus's pieces); each text is encoded by llmref (llmref.tokenizers.Tokenizer) and by the
library. On the first mismatch hypothesis shrinks the text to the shortest failing string,
and both id sequences are printed around the first index where they differ. Exit status: 0
every input matched, 1 a mismatch (the shrunk one is printed), 2 a usage or input error.

What is compared (special-token names read as ordinary text unless the library matches them):
  tiktoken       Encoding.encode(text, disallowed_special=())      vs encode(text, disallowed_special=())
  tokenizers     Tokenizer.encode(text, add_special_tokens=False)  vs encode(text, allowed_special="all")
  sentencepiece  SentencePieceProcessor.encode(text)               vs encode(text, disallowed_special=())
The library side of tiktoken is built by tiktoken's own loaders and constructors
(tiktoken_ext/openai_public.py) from the same offline files llmref reads.

UNASSIGNED: generated text holds only code points assigned in Python's Unicode tables
(unicodedata). The `regex` module llmref's patterns run on, tiktoken's Rust regex, the
tokenizers library and Python's unicodedata each carry their own Unicode version, so a
character assigned since (U+3D000 is a letter to `regex` 2026, unassigned to tiktoken) is
classified differently by each - a difference of table versions, not of the algorithm, which
specs/bpe_encode.yaml and wordpiece_encode.yaml name.
"""
import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from llmref.errors import InputError

AGAINST = ("tiktoken", "tokenizers", "sentencepiece")
# Characters tokenizers get wrong: digit runs, contractions in both cases, whitespace of every
# kind, CJK, kana, Hangul, emoji with ZWJ and skin tones, combining marks, Greek sigma,
# replacement character, BOM, special-token brackets.
HOSTILE = ("0123456789'sStTlLdDmMvVrReE  \t\n\r\u00a0\u3000\u2028\u2581.,!?-_/\\\"<|>[]()"
           "a\u00e9\u00c9\u0301\u4e2d\u6587\u3042\u30ab\ud55c\U0001F600\U0001F44D\U0001F3FD\u200d"
           "\u03a3\u03c3\u03c2\ufffd\ufeff\u0130\u00df")


@dataclass
class Mismatch:
    """The shortest failing text found and both id sequences."""
    text: str
    ours: list
    theirs: list

    @property
    def index(self) -> int:
        """The first position where the id sequences differ."""
        for k, (a, b) in enumerate(zip(self.ours, self.theirs)):
            if a != b:
                return k
        return min(len(self.ours), len(self.theirs))

    def report(self, context: int = 4) -> str:
        k = self.index
        lo = max(0, k - context)
        return (f"mismatch on {self.text!r} ({len(self.text)} characters)\n"
                f"  first difference at index {k}\n"
                f"  llmref  [{lo}:{k + context + 1}] = {self.ours[lo:k + context + 1]} (of {len(self.ours)})\n"
                f"  library [{lo}:{k + context + 1}] = {self.theirs[lo:k + context + 1]} (of {len(self.theirs)})")


@dataclass
class Result:
    inputs: int = 0          # texts compared while generating (shrinking not counted)
    matches: int = 0         # of which both sides gave the same ids
    mismatch: Mismatch | None = None
    samples: list = field(default_factory=list)


class _Differs(AssertionError):
    def __init__(self, mismatch):
        super().__init__(mismatch.report())
        self.mismatch = mismatch


# Blocks whose Unicode properties the tokenizers library's older tables share with Python's
# unicodedata: Latin, Greek, Cyrillic with combining marks, general punctuation, CJK symbols and
# kana, the main ideograph block, Hangul syllables, full-width forms, emoji ('--blocks stable').
STABLE_BLOCKS = [(0x20, 0x52F), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
                 (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1F64F)]


def texts(max_size: int = 80, surrogates: bool = False, blocks: str = "all"):
    """The hypothesis strategy of fuzzed text; blocks='stable' draws arbitrary characters only
    from STABLE_BLOCKS."""
    from hypothesis import strategies as st

    from llmref.ref import bpe
    from llmref.ref._corpus import CORPUS

    pieces = sorted(set(bpe.split_pieces(CORPUS, "cl100k")))
    if blocks == "stable":
        any_char = st.one_of([st.characters(min_codepoint=lo, max_codepoint=hi,
                                            exclude_categories=["Cs", "Co", "Cn"]) for lo, hi in STABLE_BLOCKS])
        wide = any_char
    else:  # unassigned code points (Cn) are left out: see UNASSIGNED
        any_char = st.characters(exclude_categories=("Cn",) if surrogates else ("Cs", "Cn"))
        wide = st.characters(codec="utf-8", max_codepoint=0x2FFFF, exclude_categories=("Cn",))
    return st.one_of(
        st.text(any_char, max_size=max_size),
        st.text(st.sampled_from(HOSTILE), max_size=max_size),
        st.lists(st.sampled_from(pieces), max_size=max_size // 4).map("".join),
        st.text(wide, max_size=max_size // 2),
    )


def fuzz(ours, theirs, examples: int = 200, seed: int = 0, max_size: int = 80,
         surrogates: bool = False, corpus=(), blocks: str = "all") -> Result:
    """Compare ours(text) with theirs(text) on the given corpus texts, then on `examples`
    generated texts; on a mismatch, shrink to the shortest failing text."""
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings

    result = Result()
    for text in corpus:
        a, b = list(ours(text)), list(theirs(text))
        result.inputs += 1
        if a != b:
            result.mismatch = Mismatch(text, a, b)
            return result
        result.matches += 1
    generating = [True]

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(texts(max_size, surrogates, blocks))
    def check(text):
        a, b = list(ours(text)), list(theirs(text))
        if generating[0]:
            result.inputs += 1
            result.matches += a == b
        if a != b:
            generating[0] = False
            raise _Differs(Mismatch(text, a, b))

    try:
        check()
    except _Differs as exc:
        result.mismatch = exc.mismatch
    return result


# ---------------------------------------------------------------------------------------------
# The two sides for each library


def sides(against: str, vocab: str, backend: str = "reference", pattern=None):
    """(ours, theirs, surrogates) for one library and vocabulary."""
    from llmref.tokenizers import Tokenizer

    if against == "tiktoken":
        if Path(vocab).is_file():
            if pattern is None:
                raise InputError("--pattern: a .tiktoken file needs its pattern (cl100k_base, o200k_base, gpt2)")
            tok = Tokenizer.from_tiktoken_file(vocab, pattern=pattern, backend=backend)
            enc = _tiktoken_from_file(vocab, pattern)
        else:
            tok = Tokenizer.from_tiktoken(vocab, backend=backend)
            enc = tiktoken_library(vocab)
        return (lambda t: tok.encode(t, disallowed_special=()),
                lambda t: enc.encode(t, disallowed_special=()), True)
    if against == "tokenizers":
        library = _import("tokenizers")
        tok = Tokenizer.from_tokenizer_json(vocab, backend=backend)
        theirs = library.Tokenizer.from_file(str(vocab))
        theirs.no_padding()
        theirs.no_truncation()
        return (lambda t: tok.encode(t, allowed_special="all"),
                lambda t: theirs.encode(t, add_special_tokens=False).ids, False)
    if against == "sentencepiece":
        library = _import("sentencepiece")
        tok = Tokenizer.from_sentencepiece(vocab, backend=backend)
        theirs = library.SentencePieceProcessor(model_file=str(vocab))
        return (lambda t: tok.encode(t, disallowed_special=()), theirs.encode, False)
    raise InputError(f"--against: expected one of {AGAINST}, got {against!r}")


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        raise InputError(f"--against: the {name} library is not installed") from None


_KEEP = []  # temporary folders that must outlive the tiktoken Encoding built from them


def tiktoken_library(name: str):
    """tiktoken's own Encoding for a named encoding, built by tiktoken_ext/openai_public.py's
    constructor with its loaders pointed at the offline copy (tiktoken checks the hashes)."""
    tiktoken = _import("tiktoken")
    import tiktoken.load
    import tiktoken_ext.openai_public as public

    from llmref.tokenizers import ALIASES, offline_source, tiktoken_file

    key = ALIASES.get(name, name)
    source = offline_source(key)
    if not source.is_dir():
        folder = tempfile.TemporaryDirectory()
        _KEEP.append(folder)
        plain = Path(folder.name) / f"{key}.tiktoken"
        plain.write_bytes(tiktoken_file(source))
    saved = public.load_tiktoken_bpe, public.data_gym_to_mergeable_bpe_ranks
    public.load_tiktoken_bpe = lambda url, expected_hash=None: tiktoken.load.load_tiktoken_bpe(str(plain), expected_hash)
    public.data_gym_to_mergeable_bpe_ranks = lambda vocab_bpe_file, encoder_json_file, vocab_bpe_hash=None, encoder_json_hash=None, **kw: \
        tiktoken.load.data_gym_to_mergeable_bpe_ranks(str(source / "vocab.bpe"), str(source / "encoder.json"),
                                                      vocab_bpe_hash, encoder_json_hash)
    try:
        config = getattr(public, key)()
    finally:
        public.load_tiktoken_bpe, public.data_gym_to_mergeable_bpe_ranks = saved
    return tiktoken.Encoding(**config)


def _tiktoken_from_file(path, pattern):
    tiktoken = _import("tiktoken")
    import tiktoken.load

    from llmref.ref import bpe
    from llmref.tokenizers import PATTERN_NAMES

    ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    return tiktoken.Encoding(Path(path).name, pat_str=bpe.PATTERNS[PATTERN_NAMES[pattern]],
                             mergeable_ranks=ranks, special_tokens={})


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of `llmref tokenizers fuzz`."""
    parser.add_argument("--against", required=True, choices=AGAINST, help="the library to compare with")
    parser.add_argument("vocab", metavar="VOCAB",
                        help="tiktoken: an encoding name (cl100k_base, o200k_base, gpt2) or a .tiktoken "
                             "file; tokenizers: a tokenizer.json; sentencepiece: a .model")
    parser.add_argument("--examples", type=int, default=500, help="generated texts (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--max-size", type=int, default=80, help="longest generated text in characters")
    parser.add_argument("--pattern", default=None, help="the pattern of a .tiktoken file")
    parser.add_argument("--backend", default="reference", choices=("reference", "numba-cpu"))
    parser.add_argument("--blocks", default="all", choices=("all", "stable"),
                        help="stable: arbitrary characters only from blocks whose Unicode tables the "
                             "tokenizers library shares with Python (see STABLE_BLOCKS)")
    parser.add_argument("--no-corpus", action="store_true", help="skip the committed corpus texts")
    return parser


def run(args) -> int:
    from llmref.ref._corpus import EXTRA, SAMPLES, sample_text

    if args.examples < 0:
        raise InputError(f"--examples: must be >= 0, got {args.examples}")
    if args.max_size < 1:
        raise InputError(f"--max-size: must be >= 1, got {args.max_size}")
    ours, theirs, surrogates = sides(args.against, args.vocab, args.backend, args.pattern)
    corpus = () if args.no_corpus else [sample_text(n) for n in [*SAMPLES, "corpus", "special", *EXTRA]]
    result = fuzz(ours, theirs, args.examples, args.seed, args.max_size, surrogates, corpus, args.blocks)
    print(f"{args.against} {args.vocab}: {result.inputs} inputs, {result.matches} exact matches")
    if result.mismatch is not None:
        print(result.mismatch.report())
        return 1
    return 0
