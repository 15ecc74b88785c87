"""Byte-level BPE pre-tokenisation in numba.njit: the gpt2 (r50k), cl100k and o200k regexes of
llmref.ref.bpe.PATTERNS reproduced by a hand-written scanner over code points.

A backtracking regex engine (the `regex` module, tiktoken's fancy-regex) tries a pattern's
alternatives in order at a position and takes the first that matches, giving back characters
inside an alternative (backtracking) until the rest of it matches; findall then starts again
where the match ended. Each pattern here is one function `_next_<pattern>(cps, i, stop, ...)`:
the end of the match at i, its branches in the pattern's order, each commented with the
alternative it reproduces and how the engine's backtracking resolves. The text is the code-point
array cps[start:stop] of one chunk between special tokens: stop is the regex's end of string
(for `$` and `(?!\\S)`).

Character classes are a table of bit flags per code point (LETTER = \\p{L}, NUMBER = \\p{N},
SPACE = \\s, UPPER and LOWER = o200k's two letter classes), built once per process by asking
the `regex` module itself - the library the reference pre-tokenises with - which code points
each class matches, so the two agree on every code point of its Unicode version. The letters of
the contractions under (?i) (e.g. U+017F LONG S matches 's') come from `regex` the same way.

llmref.accel.numba_cpu.bpe compiles piece_ends into its own functions, and numba's cache
(cache=True) checks only the file a function is defined in: after editing this module, delete
the bpe.*.nbi / bpe.*.nbc files of accel/numba_cpu/__pycache__ (or touch bpe.py), else the
encoder keeps running the scanner it was compiled with.
"""
from functools import lru_cache

import numba
import numpy as np
import regex

# Bit flags of the class table: which of the patterns' classes a code point belongs to.
LETTER = 1  # \p{L}
NUMBER = 2  # \p{N}
SPACE = 4  # \s
UPPER = 8  # [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]   o200k's first letter class
LOWER = 16  # [\p{Ll}\p{Lm}\p{Lo}\p{M}]         o200k's second letter class
_CLASS_RUNS = ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+"),
               (UPPER, r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"), (LOWER, r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"))
_CONTRACTION_LETTERS = "sdmtlver"  # the letters of 's 'd 'm 't 'll 've 're

PATTERN_IDS = {"gpt2": 0, "cl100k": 1, "o200k": 2}
GPT2, CL100K, O200K = 0, 1, 2

_APOSTROPHE, _SPACE, _CR, _LF, _SLASH = 0x27, 0x20, 0x0D, 0x0A, 0x2F
_S, _D, _M, _T, _L, _V, _E, _R = (ord(c) for c in "sdmtlver")
_UNICODE = 0x110000


@lru_cache(maxsize=None)
def tables() -> tuple:
    """(classes, fold), built once per process from the `regex` module:
      classes: uint8 (0x110000,), the bit flags above of every code point (surrogates: none);
      fold:    uint8, fold[cp] = the lowercase ASCII letter of _CONTRACTION_LETTERS that cp
               matches under (?i) ('S', 's' and U+017F -> 's'), 0 for none; code points past
               its end match none.
    One string of every code point is searched for runs of each class: a few thousand matches,
    well under a second."""
    points = np.arange(_UNICODE, dtype=np.uint32)
    points[0xD800:0xE000] = 0  # a str that encodes holds no surrogate; U+0000 stands in for them
    everything = points.tobytes().decode("utf-32-le")
    classes = np.zeros(_UNICODE, dtype=np.uint8)
    for bit, run in _CLASS_RUNS:
        for match in regex.finditer(run, everything):
            classes[match.start():match.end()] |= bit
    if classes[0]:
        raise AssertionError("U+0000 is in a pre-tokenisation class; it cannot stand in for surrogates")
    classes[0xD800:0xE000] = 0
    folded = {match.start(): ord(letter) for letter in _CONTRACTION_LETTERS
              for match in regex.finditer(f"(?i:{letter})", everything)}
    fold = np.zeros(max(folded) + 1, dtype=np.uint8)
    for cp, letter in folded.items():
        fold[cp] = letter
    return classes, fold


# ---------------------------------------------------------------------------------------------
# Runs and single characters


@numba.njit(cache=True, nogil=True)
def _run(cps, i, stop, classes, bits):
    """End of the run of code points from i in any of the classes `bits` (i if cps[i] is not)."""
    while i < stop and classes[cps[i]] & bits:
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _run_outside(cps, i, stop, classes, bits):
    """End of the run of code points from i in none of the classes `bits`."""
    while i < stop and not classes[cps[i]] & bits:
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _run_of(cps, i, stop, a, b, c):
    """End of the run of code points from i equal to a, b or c (e.g. [\\r\\n/]*)."""
    while i < stop and (cps[i] == a or cps[i] == b or cps[i] == c):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _is_other(cps, j, stop, classes):
    """cps[j] is in [^\\s\\p{L}\\p{N}] (punctuation, symbols, marks, controls...)."""
    return j < stop and not classes[cps[j]] & (LETTER | NUMBER | SPACE)


@numba.njit(cache=True, nogil=True)
def _optional_space(cps, i, stop, classes):
    """Where the class after ` ?` must start: i + 1 when cps[i] is a space with something after
    it, else i. The engine tries the space taken first and then not; the classes after ` ?`
    here (\\p{L}, \\p{N}, [^\\s\\p{L}\\p{N}]) never hold a space, so without it they fail at i
    anyway: one test at the returned position decides."""
    return i + 1 if cps[i] == _SPACE and i + 1 < stop else i


@numba.njit(cache=True, nogil=True)
def _optional_prefix(cps, i, stop, classes):
    """Where the letters after `[^\\r\\n\\p{L}\\p{N}]?` start when the prefix is taken: i + 1 if
    cps[i] is in the prefix class, else i (the prefix cannot be taken)."""
    c = cps[i]
    prefix = c != _CR and c != _LF and not classes[c] & (LETTER | NUMBER)
    return i + 1 if prefix else i


@numba.njit(cache=True, nogil=True)
def _last_newline(cps, i, k):
    """Index of the last \\r or \\n in cps[i:k], -1 if none."""
    for m in range(k - 1, i - 1, -1):
        if cps[m] == _CR or cps[m] == _LF:
            return m
    return -1


# ---------------------------------------------------------------------------------------------
# Contractions


@numba.njit(cache=True, nogil=True)
def _letter(cps, k, stop, fold, ignore_case):
    """The lowercase ASCII letter cps[k] is in a contraction: itself if ignore_case is False
    (and it is a lowercase ASCII letter), under (?i) the letter it matches case-insensitively
    (fold); 0 for none or past the end."""
    if k >= stop:
        return 0
    c = cps[k]
    if ignore_case:
        return fold[c] if c < fold.shape[0] else 0
    return c if 0x61 <= c <= 0x7A else 0


@numba.njit(cache=True, nogil=True)
def _contraction(cps, i, stop, fold, ignore_case):
    """End of `'(?:[sdmt]|ll|ve|re)` at i (cps[i] an apostrophe), or -1; (?i:...) when
    ignore_case. o200k's `(?i:'s|'t|'re|'ve|'m|'ll|'d)` is the same set: every alternative
    starts with a different letter, so their order does not matter."""
    if cps[i] != _APOSTROPHE:
        return -1
    a = _letter(cps, i + 1, stop, fold, ignore_case)
    if a == _S or a == _D or a == _M or a == _T:
        return i + 2
    b = _letter(cps, i + 2, stop, fold, ignore_case)
    if (a == _L and b == _L) or (a == _V and b == _E) or (a == _R and b == _E):
        return i + 3
    return -1


@numba.njit(cache=True, nogil=True)
def _optional_contraction(cps, w, stop, fold):
    """End of o200k's `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` at w: the contraction if one starts
    there (greedy), else w."""
    if w < stop:
        e = _contraction(cps, w, stop, fold, True)
        if e >= 0:
            return e
    return w


# ---------------------------------------------------------------------------------------------
# Whitespace


@numba.njit(cache=True, nogil=True)
def _space_but_last(i, k):
    """`\\s+(?!\\S)` on the whitespace run cps[i:k] followed by a non-space: \\s+ gives back its
    last code point so that a space follows; a run of one then fails (-1)."""
    return k - 1 if k - i >= 2 else -1


# ---------------------------------------------------------------------------------------------
# The three patterns


@numba.njit(cache=True, nogil=True)
def _next_gpt2(cps, i, stop, classes, fold):
    """End of the gpt2 (r50k) match at i, the first alternative of
    '(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|\\s++$|\\s+(?!\\S)|\\s
    that matches (contractions case-sensitive, digit runs unbounded)."""
    # '(?:[sdmt]|ll|ve|re)
    e = _contraction(cps, i, stop, fold, False)
    if e >= 0:
        return e
    j = _optional_space(cps, i, stop, classes)
    c = classes[cps[j]]
    if c & LETTER:  # ' ?\p{L}++'
        return _run(cps, j, stop, classes, LETTER)
    if c & NUMBER:  # ' ?\p{N}++'
        return _run(cps, j, stop, classes, NUMBER)
    if _is_other(cps, j, stop, classes):  # ' ?[^\s\p{L}\p{N}]++'
        return _run_outside(cps, j, stop, classes, LETTER | NUMBER | SPACE)
    # cps[i] is whitespace: every other code point is a letter, a number or "other"
    k = _run(cps, i, stop, classes, SPACE)
    if k == stop:  # \s++$ (the possessive run takes a final \n too, so $ is the end)
        return k
    e = _space_but_last(i, k)  # \s+(?!\S)
    return e if e >= 0 else i + 1  # \s


@numba.njit(cache=True, nogil=True)
def _next_cl100k(cps, i, stop, classes, fold):
    """End of the cl100k match at i, the first alternative of
    '(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+
    |\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s  that matches."""
    # '(?i:[sdmt]|ll|ve|re)
    e = _contraction(cps, i, stop, fold, True)
    if e >= 0:
        return e
    # [^\r\n\p{L}\p{N}]?+\p{L}++: the prefix is possessive (never given back); without it the
    # letters would have to start at cps[i], which the prefix class excludes anyway
    j = _optional_prefix(cps, i, stop, classes)
    if j < stop and classes[cps[j]] & LETTER:
        return _run(cps, j, stop, classes, LETTER)
    # \p{N}{1,3}+
    if classes[cps[i]] & NUMBER:
        return _run(cps, i, min(stop, i + 3), classes, NUMBER)
    # ' ?[^\s\p{L}\p{N}]++[\r\n]*+'
    j = _optional_space(cps, i, stop, classes)
    if _is_other(cps, j, stop, classes):
        e = _run_outside(cps, j, stop, classes, LETTER | NUMBER | SPACE)
        return _run_of(cps, e, stop, _CR, _LF, _LF)
    # cps[i] is whitespace
    k = _run(cps, i, stop, classes, SPACE)
    if k == stop:  # \s++$
        return k
    m = _last_newline(cps, i, k)  # \s*[\r\n]: \s* gives back up to the run's last \r or \n
    if m >= 0:
        return m + 1
    e = _space_but_last(i, k)  # \s+(?!\S)
    return e if e >= 0 else i + 1  # \s


@numba.njit(cache=True, nogil=True)
def _o200k_lower_word(cps, i, stop, classes, fold):
    """End of `[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+
    (?i:'s|'t|'re|'ve|'m|'ll|'d)?` at i, or -1, as the engine backtracks: the prefix is tried
    taken, then not; UPPER* takes its whole run and gives code points back, from the end, until
    one that starts LOWER+ (Lm, Lo and marks are in both classes); LOWER+ and the optional
    contraction are greedy and then nothing is left to fail."""
    s = _optional_prefix(cps, i, stop, classes)
    while True:
        u = _run(cps, s, stop, classes, UPPER)
        for t in range(u, s - 1, -1):
            if t < stop and classes[cps[t]] & LOWER:
                return _optional_contraction(cps, _run(cps, t, stop, classes, LOWER), stop, fold)
        if s == i:
            return -1
        s = i  # the prefix not taken: a mark at i can then start the letters itself


@numba.njit(cache=True, nogil=True)
def _o200k_upper_word(cps, i, stop, classes, fold):
    """End of `[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*
    (?i:'s|'t|'re|'ve|'m|'ll|'d)?` at i, or -1: UPPER+ greedy, then LOWER* and the contraction
    cannot fail, so the first start (prefix taken, then not) holding an UPPER code point wins."""
    s = _optional_prefix(cps, i, stop, classes)
    while True:
        if s < stop and classes[cps[s]] & UPPER:
            w = _run(cps, _run(cps, s, stop, classes, UPPER), stop, classes, LOWER)
            return _optional_contraction(cps, w, stop, fold)
        if s == i:
            return -1
        s = i


@numba.njit(cache=True, nogil=True)
def _next_o200k(cps, i, stop, classes, fold):
    """End of the o200k match at i, the first alternative of
    [^\\r\\n\\p{L}\\p{N}]?[UPPER]*[LOWER]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
    |[^\\r\\n\\p{L}\\p{N}]?[UPPER]+[LOWER]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
    |\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
    that matches (UPPER = [\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}], LOWER = [\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}])."""
    e = _o200k_lower_word(cps, i, stop, classes, fold)
    if e >= 0:
        return e
    e = _o200k_upper_word(cps, i, stop, classes, fold)
    if e >= 0:
        return e
    # \p{N}{1,3}
    if classes[cps[i]] & NUMBER:
        return _run(cps, i, min(stop, i + 3), classes, NUMBER)
    # ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
    j = _optional_space(cps, i, stop, classes)
    if _is_other(cps, j, stop, classes):
        e = _run_outside(cps, j, stop, classes, LETTER | NUMBER | SPACE)
        return _run_of(cps, e, stop, _CR, _LF, _SLASH)
    # cps[i] is whitespace
    k = _run(cps, i, stop, classes, SPACE)
    m = _last_newline(cps, i, k)  # \s*[\r\n]+: \s* gives back up to the run's last \r or \n
    if m >= 0:
        return m + 1
    if k == stop:  # \s+(?!\S) at the end of the text: nothing follows
        return k
    e = _space_but_last(i, k)  # \s+(?!\S)
    return e if e >= 0 else max(k, i + 1)  # \s+


# ---------------------------------------------------------------------------------------------
# Driver


@numba.njit(cache=True, nogil=True)
def piece_ends(cps, start, stop, pattern, classes, fold, ends, count):
    """Pre-tokenises cps[start:stop] (one chunk of text; stop is its end of string): writes the
    end (a code-point index) of each piece to ends[count:], returns the new count. pattern is a
    PATTERN_IDS value. Every code point is a letter, a number, whitespace or "other", so some
    alternative of each pattern matches at every position and the pieces cover the chunk."""
    i = start
    while i < stop:
        if pattern == GPT2:
            e = _next_gpt2(cps, i, stop, classes, fold)
        elif pattern == CL100K:
            e = _next_cl100k(cps, i, stop, classes, fold)
        else:
            e = _next_o200k(cps, i, stop, classes, fold)
        ends[count] = e
        count += 1
        i = e
    return count


def codepoints(text: str) -> np.ndarray:
    """The code points of text, uint32 (a str with a lone surrogate cannot be encoded)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def split(text: str, pattern: str) -> list:
    """The pieces of text as str, as regex.findall(llmref.ref.bpe.PATTERNS[pattern], text)."""
    cps = codepoints(text)
    classes, fold = tables()
    ends = np.empty(cps.shape[0], dtype=np.int64)
    count = piece_ends(cps, 0, cps.shape[0], PATTERN_IDS[pattern], classes, fold, ends, 0)
    starts = [0] + ends[:count - 1].tolist()
    return [text[a:b] for a, b in zip(starts, ends[:count].tolist())]
