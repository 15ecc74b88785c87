"""w4a16_matmul: bad operands on every backend (cupy's are refused before cupy is imported),
both numba backends against the reference at the kernel's shapes, the word layout the CUDA C
kernel unpacks, its kernel names, and the GPU benchmark without a GPU."""
import numpy as np
import pytest

from llmref import InputError
from llmref.accel.cupy import w4a16_matmul as cupy_host
from llmref.accel.cupy.w4a16_matmul import kernel_words
from llmref.accel.numba_cpu import _threads, w4a16_matmul as fast
from llmref.accel.numba_cuda import w4a16_matmul as cuda_w4
from llmref.ref import w4a16_matmul as ref
from llmref.ref._quant import pack_int4

RNG = np.random.default_rng(20261123)

# ----------------------------------------------------------------------------- bad input


def _w4_operands(m=2, k=64, n=8, g=32):
    return ref.w4a16_case(np.random.default_rng(0), M=m, K=k, N=n, GS=g)


W4A16 = [ref.w4a16_matmul, fast.w4a16_matmul, cuda_w4.w4a16_matmul,
         cupy_host.w4a16_matmul]  # cupy: checked before cupy is imported


@pytest.mark.parametrize("impl", W4A16)
@pytest.mark.parametrize("change,name", [
    ({"w_packed": lambda o: o["w_packed"][:, :-1]}, "w_packed"),
    ({"w_packed": lambda o: o["w_packed"].astype(np.int32)}, "w_packed"),
    ({"scales": lambda o: o["scales"].T}, "scales"),
    ({"zeros": lambda o: o["zeros"][:, :1]}, "zeros"),
    ({"zeros": lambda o: o["zeros"] + 16}, "zeros"),  # a code out of range
    ({"group_size": 48}, "group_size"),  # does not divide K = 64
    ({"group_size": 1}, "group_size"),
    ({"group_size": 0}, "group_size"),
    ({"x": lambda o: o["x"][:0]}, "x"),  # M = 0
    ({"w_packed": lambda o: o["w_packed"][:0], "scales": lambda o: o["scales"][:0],
      "zeros": lambda o: o["zeros"][:0]}, "w_packed"),  # N = 0
])
def test_w4a16_rejects_bad_operands(impl, change, name):
    ops = dict(_w4_operands(), group_size=32)
    for key, value in change.items():
        ops[key] = value(ops) if callable(value) else value
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**ops)


@pytest.mark.parametrize("impl", W4A16)
def test_w4a16_rejects_an_odd_group_size_that_divides_k(impl):
    """G = 3 divides K = 192 but splits packed bytes; numba-cpu once disagreed with the
    reference by 2.9 on it. Every backend refuses it through w4a16_matmul_args."""
    ops = ref.w4a16_case(np.random.default_rng(1), M=5, K=192, N=40, GS=3)
    with pytest.raises(InputError, match="^group_size:"):
        impl(**ops, group_size=3)


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls w4a16_matmul_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast, cuda_w4, cupy_host):
        text = Path(module.__file__).read_text()
        assert "w4a16_matmul_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- the numba kernels


@pytest.mark.parametrize("m,g", [(1, 128), (7, 64), (64, 128), (33, 64)])
@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_numba_w4a16_matches_the_reference_at_kernel_shapes(m, g, dtype):
    import ml_dtypes

    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    ops = ref.w4a16_case(np.random.default_rng(m), M=m, K=256, N=24, GS=g)
    ops["x"], ops["scales"] = ops["x"].astype(dt), ops["scales"].astype(dt)
    want = ref.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    got = fast.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    u = 2.0 ** -8 if dtype == "bfloat16" else 2.0 ** -11  # one output rounding each
    assert np.all(np.abs(got - want) <= 2 * u * np.abs(want) + 1e-3 * u * np.abs(want).max())


@pytest.mark.parametrize("m,g", [(1, 64), (1, 192), (1, 8), (1, 24), (1, 2), (1, 6), (2, 6), (4, 8), (5, 16),
                                 (9, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threaded", [False, True], ids=["serial", "threaded"])
def test_numba_cpu_w4a16_every_loop_and_remainder(m, g, dtype, threaded, monkeypatch):
    """M = 1 with groups of whole vectors of eight words (64 codes: three groups; 192: one group of
    three vectors) takes the vector GEMV, with groups of whole words (8 or 24 codes) the spread
    GEMV; groups of 2 or 6 codes (not whole words) and every M > 1 take the row loop; each
    loop's serial build, and its threaded one (these shapes are below llmref.accel.numba_cpu.
    _threads.GRAIN). Each is held to the deterministic bound of a K-term dot product,
    |error| <= K u sum|x W|."""
    if threaded:
        monkeypatch.setattr(_threads, "GRAIN", 0)
    k = 192  # a multiple of every g here, and of the 8 codes of a word
    ops = ref.w4a16_case(np.random.default_rng(m * 100 + g), M=m, K=k, N=13, GS=g)
    ops["x"], ops["scales"] = ops["x"].astype(dtype), ops["scales"].astype(dtype)
    want = ref.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    got = fast.w4a16_matmul(**ops, group_size=g)
    assert got.dtype == dtype and got.shape == (m, 13)
    w = ref.dequantize_w4(ops["w_packed"], ops["scales"].astype(np.float64), ops["zeros"], g)  # (N, K)
    scale = np.abs(ops["x"].astype(np.float64)) @ np.abs(w).T  # (M, N): sum_k |x_k W_nk|
    assert np.all(np.abs(got - want) <= k * np.finfo(dtype).eps / 2 * scale + np.finfo(dtype).tiny)


@pytest.mark.parametrize("m,g", [(1, 128), (7, 64)])
def test_numba_cuda_w4a16_matches_the_reference_beyond_the_simulated_smoke_case(m, g):
    """The conformance run simulates one small case; here a decode step and an odd M with two
    groups, float16 activations widened to float32 as the spec's convention has it."""
    ops = ref.w4a16_case(np.random.default_rng(m), M=m, K=256, N=24, GS=g)
    ops["x"], ops["scales"] = ops["x"].astype(np.float16), ops["scales"].astype(np.float16)
    want = ref.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    got = cuda_w4.w4a16_matmul(**ops, group_size=g).astype(np.float64)
    u = 2.0 ** -11  # one output rounding
    assert np.all(np.abs(got - want) <= 2 * u * np.abs(want) + 1e-3 * u * np.abs(want).max())


# ----------------------------------------------------------------------------- the CUDA C kernel


def test_kernel_words_hold_eight_consecutive_codes():
    q = RNG.integers(0, 16, size=(6, 64))
    words = kernel_words(pack_int4(q))
    assert words.shape == (6, 8)
    for i in range(8):
        assert np.array_equal((words >> (4 * i)) & 0xF, q[:, i::8])


def test_host_code_names_kernels_that_the_cuda_source_defines():
    """Without a GPU the kernel cannot run here: at least every name the host launches exists."""
    import re
    from pathlib import Path

    source = (Path(cupy_host.__file__).parent / cupy_host.SOURCE).read_text()
    defined = set(re.findall(r"^W4A16_KERNEL\((\w+),", source, flags=re.M))
    wanted = {cupy_host.kernel_name(dtype, m) for dtype in cupy_host.DTYPES for m in range(1, 65)}
    assert wanted <= defined
    assert f"#define WARPS {cupy_host.WARPS}" in source


def test_gpu_benchmark_explains_itself_without_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU is present: bench/w4a16_matmul.py would run the real benchmark")
    except Exception:
        pass
    script = Path(__file__).resolve().parents[1] / "bench" / "w4a16_matmul.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no CUDA GPU available" in result.stderr
