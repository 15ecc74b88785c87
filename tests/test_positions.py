"""Absolute position encodings: sinusoidal encodings' relative-position property, learned
lookups through every backend, and bad input."""
import numpy as np
import pytest

from llmref.accel.numba_cpu import positions as numba_cpu_positions
from llmref.accel.numba_cuda import positions as numba_cuda_positions
from llmref.errors import InputError
from llmref.ref.positions import learned_positions, sinusoidal_positions

LEARNED = [learned_positions, numba_cpu_positions.learned_positions,
           numba_cuda_positions.learned_positions]
BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def test_sinusoidal_encoding_of_p_plus_k_is_a_rotation_of_p():
    """Vaswani et al. sec. 3.5: PE[p + k] is a linear function of PE[p] for a fixed offset k."""
    dim, k = 16, 7
    pe = sinusoidal_positions(np.arange(40), dim=dim)
    shifted = sinusoidal_positions(np.arange(40) + k, dim=dim)
    angle = k / 10000.0 ** (np.arange(0, dim, 2) / dim)
    sin_p, cos_p = pe[:, 0::2], pe[:, 1::2]
    np.testing.assert_allclose(shifted[:, 0::2], sin_p * np.cos(angle) + cos_p * np.sin(angle),
                               atol=1e-13)
    np.testing.assert_allclose(shifted[:, 1::2], cos_p * np.cos(angle) - sin_p * np.sin(angle),
                               atol=1e-13)


@pytest.mark.parametrize("impl", LEARNED, ids=BACKENDS)
def test_learned_positions_backend_checks_through_the_reference(impl):
    table = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(InputError, match="^positions:"):
        impl(table, np.array([[0, 4]]))
    with pytest.raises(InputError, match="^table:"):
        impl(np.zeros(4), np.array([[0, 1]]))
    out = impl(table, np.zeros((0, 5), dtype=np.int64))
    assert out.shape == (0, 5, 3) and out.dtype == np.float32


@pytest.mark.parametrize("impl", LEARNED, ids=BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_learned_positions_copies_the_rows_bit_for_bit(impl, dtype):
    """The lookup moves bit patterns at every dtype, signed zeros included."""
    from llmref.dtypes import numpy_dtype

    rng = np.random.default_rng(4)
    table = rng.normal(size=(6, 5)).astype(numpy_dtype(dtype))
    table[1, 1] = -0.0
    positions = np.array([[5, 0, 1], [1, 1, 3]])
    out = impl(table, positions)
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[table.dtype.itemsize]
    assert out.dtype == table.dtype
    np.testing.assert_array_equal(out.view(bits), table.view(bits)[positions])


@pytest.mark.parametrize("impl", LEARNED, ids=BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_learned_positions_rejects_inf_and_nan_only_in_the_rows_it_reads(impl, dtype):
    """The spec's convention: a NaN or inf is an error naming table in a row that positions
    reads, at any place in the row; rows no position reads are not looked at."""
    from llmref.dtypes import numpy_dtype

    table = np.arange(4 * 37, dtype=np.float64).reshape(4, 37).astype(numpy_dtype(dtype))
    table[[1, 3], 5] = [np.nan, -np.inf]  # rows 1 and 3, which no position reads
    positions = np.array([[0, 2, 2]])
    np.testing.assert_array_equal(impl(table, positions), table[positions])
    for value in (np.inf, -np.inf, np.nan):
        for column in (0, 36):
            bad = table.copy()
            bad[2, column] = value
            with pytest.raises(InputError, match="^table:"):
                impl(bad, positions)


def test_other_position_encodings_reject_bad_input():
    with pytest.raises(InputError, match="^positions:"):
        learned_positions(np.zeros((4, 3)), np.array([[0, 4]]))
    with pytest.raises(InputError, match="^positions:"):
        learned_positions(np.zeros((4, 3)), np.array([[-1, 0]]))
    with pytest.raises(InputError, match="^positions:"):
        sinusoidal_positions(np.array([-2]))
    with pytest.raises(InputError, match="^dim:"):
        sinusoidal_positions(np.array([2]), dim=7)
