"""The LM head (specs/lm_head.yaml): logits from the final hidden states, through the
input embedding matrix (tied) or a separate output weight."""
from llmref.errors import InputError
from llmref.validate import flag, float_array, same_size


def lm_head_args(h, embedding, output_weight, tied, selected_values=True):
    """Validated (h, W) of lm_head, W the matrix `tied` selects; every backend checks through this.

    With selected_values=False the values of W are not looked at, only its shape and dtype
    (W is most of the bytes the head reads): the caller, whose product reads every entry of
    W, must call again with selected_values=True whenever a logit is not finite, or when h
    has no rows (then nothing reads W)."""
    h = float_array("h", h, min_ndim=1)
    selected = "embedding" if flag("tied", tied) else "output_weight"
    matrices = {}
    for name, value in (("embedding", embedding), ("output_weight", output_weight)):
        look = selected_values or name != selected
        matrices[name] = float_array(name, value, ndim=2, allow_nan=not look, allow_inf=not look)
        same_size(name, matrices[name].shape[1], h.shape[-1], "the last axis of h")
        if matrices[name].dtype != h.dtype:
            raise InputError(f"{name}: has dtype {matrices[name].dtype} but h has {h.dtype}")
    return h, matrices[selected]


def lm_head(h, embedding, output_weight, tied=False):
    """logits = h @ W^T,   W = embedding if tied else output_weight,   both (V, D).

    h: (..., D). Both matrices are (V, D): nn.Embedding stores (num_embeddings, dim) and
    nn.Linear(D, V) stores (out, in) = (V, D), so a tied model hands its embedding matrix in
    unchanged. The input-embedding normaliser (Gemma) is never applied here.
    """
    h, w = lm_head_args(h, embedding, output_weight, tied)
    return h @ w.T  # (..., D) @ (D, V) -> (..., V)
