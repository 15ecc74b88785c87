"""Wrong unigram (SentencePiece) variants seen in the wild (specs/unigram_encode.yaml); each
must fail its audit."""
import numpy as np

from llmref.ref import unigram


def _unigram_model(pieces, scores, types, **flags):
    return unigram.Model(pieces.split("\n"), np.asarray(scores).tolist(), np.asarray(types).tolist(),
                         **flags)


def unigram_without_dummy_prefix(text, pieces, scores, types, add_dummy_prefix=True,
                                 remove_extra_whitespaces=True, byte_fallback=False,
                                 split_digits=False):
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=False,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=split_digits)
    return np.asarray(model.encode(text), dtype=np.int64)


def unigram_ignores_split_digits(text, pieces, scores, types, add_dummy_prefix=True,
                                 remove_extra_whitespaces=True, byte_fallback=False,
                                 split_digits=False):
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=add_dummy_prefix,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=False)
    return np.asarray(model.encode(text), dtype=np.int64)


def unigram_unknown_per_character(text, pieces, scores, types, add_dummy_prefix=True,
                                  remove_extra_whitespaces=True, byte_fallback=False,
                                  split_digits=False):
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=add_dummy_prefix,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=split_digits)
    normalized = unigram.normalize(text, add_dummy_prefix, remove_extra_whitespaces)
    path = unigram.viterbi(normalized, model.lookup, model.unk_score, model.max_len, split_digits)
    return np.asarray([model.unk_id if i is None else i for _, _, i in path], dtype=np.int64)


def unigram_user_defined_highest_score(text, pieces, scores, types, add_dummy_prefix=True,
                                       remove_extra_whitespaces=True, byte_fallback=False,
                                       split_digits=False):
    """Scores a user-defined piece len_bytes * (highest NORMAL score) - 0.1, where
    sentencepiece's max_score_ starts at FLT_MIN (so log-probability models give about -0.1):
    a long user-defined piece loses to ordinary pieces."""
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=add_dummy_prefix,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=split_digits)
    highest = max(s for s, t in zip(model.scores, model.types) if t == unigram.NORMAL)
    for i, (piece, kind) in enumerate(zip(model.pieces, model.types)):
        if kind == unigram.USER_DEFINED:
            model.lookup[piece] = (i, len(piece.encode("utf-8")) * highest - 0.1)
    return np.asarray(model.encode(text), dtype=np.int64)

