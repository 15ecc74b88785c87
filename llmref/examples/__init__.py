"""Example adapters: the libraries people use, audited by llmref as they are shipped.

One module per library; each function is an adapter for one spec entry point, taking the
spec's arguments by name and calling the library. Nothing here computes a component itself:
an adapter only moves arguments into the library's form (layouts, masks, packed formats,
the meaning of a parameter such as sdpa's scale = 0) and its outputs back. Where a library's
convention differs from the spec's on some case, the adapter declares that case
UNSUPPORTED with the reason (`skip={case: reason}`, or `dtypes=[...]` for a precision), and
docs/examples.md lists it.

    torch_ops            torch (CPU build): sdpa, softmax, norms, activations, kd_loss,
                         quantize_linear, fake_quant, w8a8_matmul, embedding, lm_head,
                         paged_attention_decode (SDPA on the gathered cache), moe_layer
                         (the Mixtral block's loop over experts)
    transformers_ops     transformers: rope, sample_tokens, activations (ACT2FN)
    jax_ops              jax (CPU): softmax, sdpa
    onnx_ops             onnx.reference.ReferenceEvaluator: Softmax, LayerNormalization,
                         RMSNormalization, RotaryEmbedding, Attention
    onnxruntime_ops      onnxruntime: the same operators, and com.microsoft MatMulNBits
                         for w4a16_matmul (also with prepacked initializer weights)
    tiktoken_ops         tiktoken: bpe_encode (also with the Encoding built once)
    tokenizers_ops       tokenizers: bpe_encode
    gguf_ops             gguf-py (gguf.quants): gguf_quantize
    bitsandbytes_ops     bitsandbytes (CPU build): nf4_quantize, w8a8_matmul (a library bug:
                         see docs/examples.md)

Audit one:

    import llmref
    from llmref.examples import torch_ops
    print(llmref.audit("sdpa", torch_ops.sdpa, dtype="bfloat16").counts())

or `llmref audit sdpa llmref.examples.torch_ops:sdpa --dtype bfloat16`.
"""
