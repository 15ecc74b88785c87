"""A Mixtral-style MoE layer: numba-cpu vs the NumPy reference vs torch (CPU), or numba.cuda
on a GPU, in one run.

    python bench/moe.py [--mode cpu|gpu] [--tiny] [--out bench/results/moe_cpu.json]

Reports median times per implementation and the ratios measured side by side in this run
(absolute times on a shared machine prove little). --mode gpu times the numba.cuda kernels
and exits with a message when no CUDA GPU is present. --tiny shrinks every shape and the
repeats for a rehearsal (bench/gpu_run.sh --rehearse); only with it does --mode gpu run under
the CUDA simulator, whose times mean nothing (the result says "simulated": true).
"""
import argparse

import _run  # before numpy: one thread for every implementation
import numpy as np

TOKENS, DIM, FFN, EXPERTS, TOP_K = 256, 512, 1024, 8, 2
REPEATS = 5
TINY = {"TOKENS": 8, "DIM": 16, "FFN": 32, "EXPERTS": 4, "REPEATS": 1}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, one repeat (rehearsal)")
    args = parser.parse_args()
    if args.tiny:
        globals().update(TINY)
    from llmref.ref.moe import moe_layer as ref_moe

    m = moe_inputs(np.random.default_rng(0))
    if args.mode == "cpu":
        from llmref.accel.numba_cpu.moe import moe_layer as numba_moe

        impls, device = {"reference": lambda: ref_moe(**m), "numba-cpu": lambda: numba_moe(**m)}, {"threads_used": 1}
        versions = _run.versions(with_torch=True)
        if "torch" in versions:
            import torch

            weights = {k: torch.from_numpy(v) for k, v in m.items()}
            impls["torch"] = lambda: torch_moe(torch, weights)
    else:
        device = _run.gpu_device("bench/moe.py", args.tiny)
        from llmref.accel.numba_cuda.moe import moe_layer as cuda_moe

        impls, versions = {"reference": lambda: ref_moe(**m), "numba-cuda": lambda: cuda_moe(**m)}, _run.versions()
    _run.write_result(args.out or f"bench/results/moe_{args.mode}.json", f"moe_{args.mode}", device, versions,
                      REPEATS, shapes={"tokens": TOKENS, "dim": DIM, "ffn": FFN, "experts": EXPERTS,
                                       "top_k": TOP_K, "router": "mixtral", "dtype": "float32"},
                      results=[_run.side_by_side("moe_layer", impls, REPEATS)])


if __name__ == "__main__":
    main()
