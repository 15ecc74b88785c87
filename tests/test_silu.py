"""SiLU: bad input (on every backend, in a child process) and the torch cross-check on the
golden inputs."""
import pytest

from _activation import (BACKENDS, BAD_X, assert_bad_input_names_the_argument,
                         assert_torch_passes_the_goldens, torch)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_names_the_argument(backend, probe):
    assert_bad_input_names_the_argument(probe, "silu", backend, BAD_X)


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_passes_the_goldens(dtype):
    silu = torch().nn.functional.silu
    assert_torch_passes_the_goldens("silu", lambda x: silu(torch().from_numpy(x)).numpy(), dtype)


def test_numba_cpu_far_negative_inputs_give_zero_as_the_reference_does():
    """x sigmoid(x) for x below -104 at float32: exp(x) is below half the least subnormal, so
    the product is -0 however large |x| is (a clamp of exp's argument at -103 gave 2^-149, and
    silu(-1e38) came out -1.4e-7)."""
    import numpy as np

    from llmref.accel.numba_cpu.silu import silu
    from llmref.ref.silu import silu as reference

    x = np.array([-1e38, -3e4, -200.0, -104.5], dtype=np.float32)
    expected = reference(x).astype(np.float32)
    assert np.all(expected == 0)
    np.testing.assert_array_equal(silu(x), expected)
