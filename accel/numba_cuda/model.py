"""model_decoder on numba-cuda: the reference model assembled from the numba-cuda kernels
(llmref.accel._model). Under the CUDA simulator every kernel launch runs its threads in
Python: only the micro case is simulated (llmref.check.SIMULATOR_MAX_ELEMENTS)."""
from llmref.accel import _model


def model_decoder(weights, prompt, continuation, uniforms, config, temperature=1.0, top_k=0):
    return _model.model_decoder("numba-cuda", weights, prompt, continuation, uniforms, config,
                                temperature, top_k)
