"""Hugging Face tokenizers as shipped, adapted to llmref's bpe_encode spec.

The tokenizer is the one transformers builds from a tiktoken vocabulary
(transformers.convert_slow_tokenizer.TikTokenConverter): a byte-level BPE model whose merges
are every split of every token into two tokens, ordered by the token's rank (tokenizers
merges listed pairs, tiktoken any pair whose concatenation is a token: listing all splits
makes the two agree), ignore_merges=True (a piece that is a token is emitted whole, tiktoken's
shortcut), a Split pre-tokenizer with tiktoken's pattern and ByteLevel without its own regex.

Special tokens: tokenizers has added tokens but no allowed/disallowed distinction. Every
special name is a vocabulary entry at its spec id (256 + M + j), which BPE never produces
(the pattern splits the name); only the allowed ones are also added tokens, so only they are
cut out of the text; a disallowed one in the text is refused
here with ValueError, as tiktoken's Encoding.encode does.
"""
from llmref.adapters import declare
from llmref.examples.tiktoken_ops import tiktoken_pattern, token_bytes


def _converter(ranks: dict, pattern: str):
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class FromRanks(TikTokenConverter):
        """transformers' converter, reading the ranks given instead of a .tiktoken file."""

        def load_tiktoken_bpe(self, tiktoken_url):
            return ranks

    return FromRanks(vocab_file="(in memory)", pattern=pattern)


def _disallowed(special_tokens, allowed, disallowed):
    if list(disallowed) == ["all"]:
        return [name for name in special_tokens if name not in allowed]
    return list(disallowed)


@declare
def bpe_encode(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
    import numpy as np
    from tokenizers import AddedToken

    allowed = (list(special_tokens) if list(allowed_special) == ["all"] else list(allowed_special))
    for name in _disallowed(special_tokens, allowed, disallowed_special):
        if name in text:
            raise ValueError(f"text: contains the disallowed special token {name!r}")
    ranks = {token: rank for rank, token in enumerate(token_bytes(merges))}
    n = len(ranks)
    ranks.update({name.encode("utf-8"): n + j for j, name in enumerate(special_tokens)})
    tokenizer = _converter(ranks, tiktoken_pattern(pattern)).converted()
    tokenizer.add_special_tokens([AddedToken(name, normalized=False, special=True)
                                  for name in special_tokens if name in allowed])
    return np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
