"""Wrong character-level variants seen in the wild (specs/char_encode.yaml); each must fail its
audit."""
import numpy as np

from llmref.ref import char


def char_encode_utf16_units(text, vocab, unknown="unk"):
    """Splits astral characters into their two surrogates, each unknown."""
    table = char.char_vocab(vocab)
    units = text.encode("utf-16-le", "surrogatepass")
    chars = [units[i:i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(units), 2)]
    ids = []
    for ch in chars:
        if ch in table:
            ids.append(table[ch])
        elif unknown == "unk":
            ids.append(len(table))
    ids = np.asarray(ids, dtype=np.int64)
    return ids, char.count_tokens(ids, len(table) + 1)


def char_encode_drops_unknown(text, vocab, unknown="unk"):
    table = char.char_vocab(vocab)
    ids = np.asarray(char.encode(text, table, "skip"), dtype=np.int64)
    return ids, char.count_tokens(ids, len(table) + 1)
