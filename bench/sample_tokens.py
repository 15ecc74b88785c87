"""Batched top-p sampling over a 128k vocabulary: numba-cpu vs the NumPy reference vs torch
(CPU), or numba.cuda on a GPU, in one run.

    python bench/sample_tokens.py [--mode cpu|gpu] [--tiny] [--out bench/results/sample_tokens_cpu.json]

Reports median times per implementation and the ratios measured side by side in this run
(absolute times on a shared machine prove little). --mode gpu times the numba.cuda kernel
and exits with a message when no CUDA GPU is present. --tiny shrinks the shape and the
repeats for a rehearsal (bench/gpu_run.sh --rehearse); only with it does --mode gpu run under
the CUDA simulator, whose times mean nothing (the result says "simulated": true).
"""
import argparse

import _run  # before numpy: one thread for every implementation
import numpy as np

BATCH, VOCAB, TOP_P, TEMPERATURE = 8, 128000, 0.9, 0.8
REPEATS = 5
TINY = {"BATCH": 2, "VOCAB": 512, "REPEATS": 1}


def sampling_inputs(rng):
    logits = rng.normal(0, 3, (BATCH, VOCAB)).astype(np.float32)
    off = np.ones(BATCH)
    return dict(logits=logits, prompt_ids=np.full((BATCH, 1), -1), output_ids=np.full((BATCH, 1), -1),
                temperature=np.full(BATCH, TEMPERATURE), top_k=np.zeros(BATCH, np.int64),
                top_p=np.full(BATCH, TOP_P), min_p=0 * off, typical_p=off, repetition_penalty=off,
                presence_penalty=0 * off, frequency_penalty=0 * off,
                uniforms=rng.uniform(size=BATCH), gumbel=np.zeros((BATCH, VOCAB)))


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape, one repeat (rehearsal)")
    args = parser.parse_args()
    if args.tiny:
        globals().update(TINY)
    from llmref.ref.sample_tokens import sample_tokens as ref_sample

    s = sampling_inputs(np.random.default_rng(0))
    if args.mode == "cpu":
        from llmref.accel.numba_cpu.sample_tokens import sample_tokens as numba_sample

        impls, device = {"reference": lambda: ref_sample(**s), "numba-cpu": lambda: numba_sample(**s)}, {"threads_used": 1}
        versions = _run.versions(with_torch=True)
        if "torch" in versions:
            import torch

            logits, u = torch.from_numpy(s["logits"]), torch.from_numpy(s["uniforms"].astype(np.float32))
            impls["torch"] = lambda: torch_top_p_sample(torch, logits, u)
    else:
        device = _run.gpu_device("bench/sample_tokens.py", args.tiny)
        from llmref.accel.numba_cuda.sample_tokens import sample_tokens as cuda_sample

        impls, versions = {"reference": lambda: ref_sample(**s), "numba-cuda": lambda: cuda_sample(**s)}, _run.versions()
    _run.write_result(args.out or f"bench/results/sample_tokens_{args.mode}.json", f"sample_tokens_{args.mode}",
                      device, versions, REPEATS,
                      shapes={"batch": BATCH, "vocab": VOCAB, "top_p": TOP_P, "temperature": TEMPERATURE,
                              "dtype": "float32"},
                      results=[_run.side_by_side("sample_tokens", impls, REPEATS)])


if __name__ == "__main__":
    main()
