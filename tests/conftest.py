import os

# Without a GPU, numba.cuda kernels run in the CUDA simulator. This must be decided before
# numba.cuda is first imported. On a machine with a GPU, set LLMREF_REAL_GPU=1 to run them
# on the device instead.
if os.environ.get("LLMREF_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
