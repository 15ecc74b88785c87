"""Wrong LoRA variants seen in the wild; each must fail its audit."""
from llmref.ref.lora import lora_args, lora_delta, lora_forward


def lora_scaling_alpha(x, weight, lora_a, lora_b, alpha=16.0, use_rslora=False):
    """The adapter scaled by alpha instead of alpha / r (the rank division forgotten)."""
    x, weight, lora_a, lora_b, _ = lora_args(x, weight, lora_a, lora_b, alpha, use_rslora)
    return {"y": lora_forward(x, weight, lora_a, lora_b, alpha),
            "merged_weight": weight + lora_delta(lora_a, lora_b, alpha)}


def lora_ba_swapped(x, weight, lora_a, lora_b, alpha=16.0, use_rslora=False):
    """A and B applied in the swapped order, (x B) A and W + s (B A)^T = W + s A^T B^T: the
    lora_A / lora_B tensors exchanged on load, which only a square layer lets through."""
    x, weight, lora_a, lora_b, s = lora_args(x, weight, lora_a, lora_b, alpha, use_rslora)
    return {"y": x @ weight.T + x.dtype.type(s) * ((x @ lora_b) @ lora_a),
            "merged_weight": weight + lora_delta(lora_a, lora_b, s).T}


def lora_merged_twice(x, weight, lora_a, lora_b, alpha=16.0, use_rslora=False):
    """merge() run on an already merged layer: W + 2 s B A (no merged flag checked)."""
    x, weight, lora_a, lora_b, s = lora_args(x, weight, lora_a, lora_b, alpha, use_rslora)
    return {"y": lora_forward(x, weight, lora_a, lora_b, s),
            "merged_weight": weight + lora_delta(lora_a, lora_b, s) + lora_delta(lora_a, lora_b, s)}
