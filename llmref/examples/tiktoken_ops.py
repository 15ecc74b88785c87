"""tiktoken as shipped, adapted to llmref's bpe_encode spec.

The spec's vocabulary is built into a tiktoken.Encoding: byte i has rank i, merge i = (a, b)
makes the token bytes(a) + bytes(b) of rank 256 + i, and special token j has id 256 + M + j.
The pre-tokenisation pattern is tiktoken's own pat_str for the named encoding (read from
tiktoken_ext.openai_public without downloading its rank file). allowed_special and
disallowed_special are tiktoken's arguments; the spec's ["all"] is tiktoken's 'all'.
"""
import functools

from llmref.adapters import declare

_ENCODINGS = {"gpt2": "r50k_base", "cl100k": "cl100k_base", "o200k": "o200k_base"}


@functools.lru_cache(maxsize=None)
def tiktoken_pattern(pattern: str) -> str:
    """The pat_str of tiktoken's encoding for `pattern`, from its constructor in
    tiktoken_ext.openai_public, with the rank-file download stubbed out."""
    import tiktoken_ext.openai_public as public

    load = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda *args, **kwargs: {}
    try:
        return getattr(public, _ENCODINGS[pattern])()["pat_str"]
    finally:
        public.load_tiktoken_bpe = load


def token_bytes(merges) -> list:
    """The bytes of every token, by id: the 256 single bytes, then one per merge."""
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges.tolist():
        vocab.append(vocab[a] + vocab[b])
    return vocab


def special_argument(names):
    """The spec's list form of allowed/disallowed_special as tiktoken's argument."""
    return "all" if list(names) == ["all"] else set(names)


@declare
def bpe_encode(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
    import numpy as np
    import tiktoken

    ranks = {token: rank for rank, token in enumerate(token_bytes(merges))}
    encoding = tiktoken.Encoding(
        name=f"llmref_{pattern}", pat_str=tiktoken_pattern(pattern), mergeable_ranks=ranks,
        special_tokens={name: len(ranks) + j for j, name in enumerate(special_tokens)})
    ids = encoding.encode(text, allowed_special=special_argument(allowed_special),
                          disallowed_special=special_argument(disallowed_special))
    return np.asarray(ids, dtype=np.int64)


def _encoding(merges, pattern, special_tokens):
    import tiktoken

    ranks = {token: rank for rank, token in enumerate(token_bytes(merges))}
    return tiktoken.Encoding(
        name=f"llmref_{pattern}", pat_str=tiktoken_pattern(pattern), mergeable_ranks=ranks,
        special_tokens={name: len(ranks) + j for j, name in enumerate(special_tokens)})


_PREPARED = {}  # one entry: the Encoding built for the last vocabulary seen (see below)


@declare
def bpe_encode_prepared(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
    """bpe_encode with the tiktoken.Encoding built once, as a tokenizer is loaded once and then
    encodes many texts: kept for the merges array it was made from, compared by identity
    (the entry holds it, so an id is never reused), with the pattern and special tokens.
    A benchmark that hands the same merges again times only Encoding.encode."""
    import numpy as np

    key = (merges, pattern, tuple(special_tokens))
    hit = _PREPARED.get("key")
    if hit is None or hit[0] is not merges or hit[1:] != key[1:]:
        _PREPARED.clear()
        _PREPARED.update(key=key, encoding=_encoding(merges, pattern, special_tokens))
    ids = _PREPARED["encoding"].encode(text, allowed_special=special_argument(allowed_special),
                                       disallowed_special=special_argument(disallowed_special))
    return np.asarray(ids, dtype=np.int64)
