"""Batched top-p sampling over a 128k vocabulary and a Mixtral-style MoE layer:
numba-cpu vs the NumPy reference vs torch (CPU), or numba.cuda on a GPU, in one run.

    python bench/sampling_moe.py [--mode cpu|gpu] [--out bench/results/sampling_moe_cpu.json]

Reports median times per implementation and the ratios measured side by side in this run
(absolute times on a shared machine prove little). --mode gpu times the numba.cuda kernels
and exits with a message when no CUDA GPU is present.
"""
import argparse
import json
import os
import platform
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread for every implementation, before numpy loads

import numpy as np  # noqa: E402

BATCH, VOCAB, TOP_P, TEMPERATURE = 8, 128000, 0.9, 0.8
TOKENS, DIM, FFN, EXPERTS, TOP_K = 256, 512, 1024, 8, 2
REPEATS = 5


def median_seconds(fn):
    fn()  # warm-up (and numba compilation)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def sampling_inputs(rng):
    logits = rng.normal(0, 3, (BATCH, VOCAB)).astype(np.float32)
    off = np.ones(BATCH)
    return dict(logits=logits, prompt_ids=np.full((BATCH, 1), -1), output_ids=np.full((BATCH, 1), -1),
                temperature=np.full(BATCH, TEMPERATURE), top_k=np.zeros(BATCH, np.int64),
                top_p=np.full(BATCH, TOP_P), min_p=0 * off, typical_p=off, repetition_penalty=off,
                presence_penalty=0 * off, frequency_penalty=0 * off,
                uniforms=rng.uniform(size=BATCH), gumbel=np.zeros((BATCH, VOCAB)))


def moe_inputs(rng):
    f32 = np.float32
    return dict(hidden=rng.normal(size=(TOKENS, DIM)).astype(f32),
                gate_weight=rng.normal(0, 0.05, (EXPERTS, DIM)).astype(f32),
                bias=np.zeros(EXPERTS, f32),
                w_gate=rng.normal(0, 0.04, (EXPERTS, FFN, DIM)).astype(f32),
                w_up=rng.normal(0, 0.04, (EXPERTS, FFN, DIM)).astype(f32),
                w_down=rng.normal(0, 0.03, (EXPERTS, DIM, FFN)).astype(f32),
                shared_gate=np.zeros((1, DIM), f32), shared_up=np.zeros((1, DIM), f32),
                shared_down=np.zeros((DIM, 1), f32))


def torch_top_p_sample(torch, logits, uniforms):
    """transformers' TopPLogitsWarper after temperature, then inverse CDF in token-id order."""
    scores = logits / TEMPERATURE
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove_sorted = cumulative <= (1 - TOP_P)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
    probs = scores.masked_fill(remove, float("-inf")).softmax(-1)
    return torch.searchsorted(probs.cumsum(-1), uniforms[:, None], right=True)[:, 0]


def torch_moe(torch, w):
    """transformers' MixtralExperts loop: softmax, top-k, renormalise, one matmul per expert."""
    F = torch.nn.functional
    h = w["hidden"]
    probs = F.softmax(h @ w["gate_weight"].T, dim=-1)
    top, idx = torch.topk(probs, TOP_K, dim=-1)
    top = top / top.sum(-1, keepdim=True)
    y = torch.zeros_like(h)
    for e in range(EXPERTS):
        token, slot = torch.where(idx == e)
        x = h[token]
        out = (F.silu(x @ w["w_gate"][e].T) * (x @ w["w_up"][e].T)) @ w["w_down"][e].T
        y.index_add_(0, token, out * top[token, slot, None])
    return y


def run_cpu(rng):
    import numba

    from llmref.accel.numba_cpu.moe import moe_layer as numba_moe
    from llmref.accel.numba_cpu.sampling import sample_tokens as numba_sample
    from llmref.ref.moe import moe_layer as ref_moe
    from llmref.ref.sampling import sample_tokens as ref_sample

    s, m = sampling_inputs(rng), moe_inputs(rng)
    impls = {"sampling": {"reference": lambda: ref_sample(**s), "numba-cpu": lambda: numba_sample(**s)},
             "moe_layer": {"reference": lambda: ref_moe(**m), "numba-cpu": lambda: numba_moe(**m)}}
    versions = {"numpy": np.__version__, "numba": numba.__version__}
    try:
        import torch

        torch.set_num_threads(1)
        ts = {"logits": torch.from_numpy(s["logits"]), "u": torch.from_numpy(s["uniforms"].astype(np.float32))}
        tm = {k: torch.from_numpy(v) for k, v in m.items()}
        impls["sampling"]["torch"] = lambda: torch_top_p_sample(torch, ts["logits"], ts["u"])
        impls["moe_layer"]["torch"] = lambda: torch_moe(torch, tm)
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return impls, versions, {"threads_used": 1}


def run_gpu(rng):
    from numba import cuda

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not cuda.is_available():
        sys.exit("bench/sampling_moe.py --mode gpu: no CUDA GPU is available (or the CUDA simulator "
                 "is enabled); run --mode cpu instead")
    import numba

    from llmref.accel.numba_cuda.moe import moe_layer as cuda_moe
    from llmref.accel.numba_cuda.sampling import sample_tokens as cuda_sample
    from llmref.ref.moe import moe_layer as ref_moe
    from llmref.ref.sampling import sample_tokens as ref_sample

    s, m = sampling_inputs(rng), moe_inputs(rng)
    impls = {"sampling": {"reference": lambda: ref_sample(**s), "numba-cuda": lambda: cuda_sample(**s)},
             "moe_layer": {"reference": lambda: ref_moe(**m), "numba-cuda": lambda: cuda_moe(**m)}}
    return impls, {"numpy": np.__version__, "numba": numba.__version__}, {"gpu": cuda.get_current_device().name.decode()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or f"bench/results/sampling_moe_{args.mode}.json"
    rng = np.random.default_rng(0)
    impls, versions, device = (run_cpu if args.mode == "cpu" else run_gpu)(rng)
    results = []
    for workload, fns in impls.items():
        times = {name: median_seconds(fn) for name, fn in fns.items()}
        fast = next(n for n in times if n.startswith("numba"))
        row = {"workload": workload, "median_s": times,
               f"{fast}_speedup_vs_reference": times["reference"] / times[fast]}
        if "torch" in times:
            row[f"{fast}_time_over_torch"] = times[fast] / times["torch"]
        results.append(row)
        print(f"{workload}: " + "  ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()))
    result = {"benchmark": f"sampling_moe_{args.mode}",
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "device": {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                         "cpus": os.cpu_count(), **device},
              "versions": versions, "repeats": REPEATS,
              "shapes": {"sampling": {"batch": BATCH, "vocab": VOCAB, "top_p": TOP_P,
                                      "temperature": TEMPERATURE, "dtype": "float32"},
                         "moe_layer": {"tokens": TOKENS, "dim": DIM, "ffn": FFN, "experts": EXPERTS,
                                       "top_k": TOP_K, "router": "mixtral", "dtype": "float32"}},
              "results": results}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
