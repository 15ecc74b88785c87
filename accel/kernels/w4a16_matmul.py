"""W4A16 dequantisation and the dot product of one group (reference:
llmref.ref.w4a16_matmul), shared by numba-cpu and numba-cuda (see llmref.accel.kernels).

Weights arrive in the canonical INT4 layout, (N, K/2) bytes, byte j of row n holding code
q[n, 2j] in its low nibble and q[n, 2j + 1] in its high one. A group's 16 possible weights
(c - z) * s go into a table in the compute dtype (float32 for float32 and half activations,
float64 for float64): each is the exact product rounded once, as the reference's
(q - z) * s in that precision, and the products with x and their sum stay in that dtype.
"""


def dequantize_group(scales, zeros, n, g, table):
    """table[c] = (c - zeros[n, g]) * scales[n, g] for the 16 codes c (the difference taken as
    a Python int: under the CUDA simulator a uint8 zero-point would make it wrap)."""
    z = int(zeros[n, g])
    for c in range(16):
        table[c] = (c - z) * scales[n, g]


def group_dot(x, w_packed, table, m, n, first_byte, end_byte):
    """sum over the bytes kb in [first_byte, end_byte) of row n:
    x[m, 2 kb] * table[byte & 0xF] + x[m, 2 kb + 1] * table[byte >> 4]."""
    part = table[0] - table[0]  # 0 in the compute dtype (the table is finite)
    for kb in range(first_byte, end_byte):
        byte = w_packed[n, kb]
        part += x[m, 2 * kb] * table[byte & 0xF] + x[m, 2 * kb + 1] * table[byte >> 4]
    return part
