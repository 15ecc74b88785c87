"""Text and token-id arguments of the tokenizer families (bpe, wordpiece, unigram, char).

Two boundaries, each with one rule for lone surrogates (a Python str may hold U+D800-U+DFFF,
which no UTF-8 text can):
  as_text      the spec entry points: a str, or UTF-8 bytes decoded strictly (goldens store
               str inputs as UTF-8);
  public_text  the user-facing functions (llmref.tokenizers, the loaders' encoders): exactly
               a str ("text: expected str, got bytes").
surrogates='error' rejects a lone surrogate by name; surrogates='tiktoken' repairs the text
as tiktoken's Encoding.encode does on UnicodeEncodeError: a UTF-16 round trip with
errors='replace', so a lone surrogate becomes U+FFFD and an adjacent high + low pair becomes
the character the pair encodes.
token_ids accepts what decoders are given: a list of ints (the empty list included) or a 1-D
integer array.
"""
import numpy as np

from llmref.errors import InputError

SURROGATE_RULES = ("error", "tiktoken")


def _surrogates(name, text: str, surrogates: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        if surrogates == "tiktoken":
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        raise InputError(f"{name}: lone surrogate U+{ord(text[exc.start]):04X} at index "
                         f"{exc.start} cannot be UTF-8 encoded") from None
    return text


def as_text(name, text, surrogates: str = "error") -> str:
    """str, or UTF-8 bytes (bytes, bytearray, uint8 array) decoded strictly."""
    if isinstance(text, (bytes, bytearray, np.ndarray)):
        raw = bytes(np.asarray(text, dtype=np.uint8)) if isinstance(text, np.ndarray) else bytes(text)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: invalid UTF-8 at byte {exc.start} ({exc.reason})") from None
    if not isinstance(text, str):
        raise InputError(f"{name}: expected str or UTF-8 bytes, got {type(text).__name__}")
    return _surrogates(name, text, surrogates)


def public_text(name, text, surrogates: str = "error") -> str:
    """Exactly a str (bytes are not guessed at), with the given surrogate rule."""
    if not isinstance(text, str):
        raise InputError(f"{name}: expected str, got {type(text).__name__}")
    return _surrogates(name, text, surrogates)


def token_ids(name, ids) -> np.ndarray:
    """ids as a 1-D int64 array: an integer array, or a list / tuple of ints ([] included);
    bools, floats and strings are errors naming `name`."""
    if isinstance(ids, (list, tuple)):
        if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) for i in ids):
            bad = next(i for i in ids if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)))
            raise InputError(f"{name}: expected integer token ids, got {bad!r}")
        ids = np.asarray(ids, dtype=np.int64) if ids else np.zeros(0, dtype=np.int64)
    elif not isinstance(ids, np.ndarray):
        raise InputError(f"{name}: expected a list or 1-D array of token ids, got {type(ids).__name__}")
    if ids.dtype.kind not in "iu" or ids.ndim != 1:
        raise InputError(f"{name}: expected a 1-D integer array, got {ids.dtype} of shape {ids.shape}")
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name}: {int(ids.max())} is not a token id")
    return ids.astype(np.int64)
