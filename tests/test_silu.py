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
