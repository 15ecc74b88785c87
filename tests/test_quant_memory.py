"""quant_memory: the seed's table, exact byte counts, and bad plans named."""
import numpy as np
import pytest

from llmref import InputError


def test_memory_seed_table_and_bad_plans():
    from llmref.ref.quant_memory import quant_memory, seed_table_case

    data, scales, zeros, total, estimate = quant_memory(**seed_table_case(None))
    table = estimate.reshape(5, 3) / 1e9  # rows 1.5B..70B, columns 4, 8, 16 bits
    assert np.allclose(table[1], [4.2, 8.4, 16.8]) and np.allclose(table[4], [42.0, 84.0, 168.0])
    assert total[3] == 7e9 // 2 + 2 * 7e9 // 128 + 7e9 // 128 // 2  # 7B at 4 bits, exact
    with pytest.raises(InputError, match="^bits:"):
        quant_memory(np.array([128]), np.array([12]))
    with pytest.raises(InputError, match="^group_size:"):
        quant_memory(np.array([100]), np.array([4]))
    with pytest.raises(InputError, match="^zero_points:"):
        quant_memory(np.array([128]), np.array([4]), zero_points="yes")
