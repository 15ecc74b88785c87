"""The model specs (model_decoder, model_moe, model_encoder) on numba-cpu: the reference model
assembled from the numba-cpu kernels (llmref.accel._model); learned_positions, which has no
numba-cpu kernel, stays the reference's."""
from llmref.accel import _model


def model_decoder(weights, prompt, continuation, uniforms, config, temperature=1.0, top_k=0):
    return _model.model_decoder("numba-cpu", weights, prompt, continuation, uniforms, config,
                                temperature, top_k)


def model_encoder(weights, ids, token_type_ids, attention_mask, config):
    return _model.model_encoder("numba-cpu", weights, ids, token_type_ids, attention_mask, config)
