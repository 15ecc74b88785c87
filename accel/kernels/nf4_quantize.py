"""NF4 per block and per packed byte (reference: llmref.ref.nf4_quantize), shared by
numba-cpu and numba-cuda (see llmref.accel.kernels). x is the flat input, book the 16
codebook values in x's dtype.
"""


def block_absmax(x, b, block_size):
    """max |x| over block b."""
    a = 0.0
    for j in range(block_size):
        a = max(a, abs(x[b * block_size + j]))
    return a


def pack_pair(x, i, block_size, book, absmax, packed, x_hat):
    """Byte i: elements 2i (high nibble) and 2i + 1 (low nibble), each the nearest codebook
    entry to x / absmax (the lower code on an exact tie; absmax 0 divides by 1), and their
    x_hat = book[code] * absmax."""
    a = absmax[(2 * i) // block_size]
    divisor = a if a > 0 else 1.0
    pair = 0
    for t in range(2):
        v = x[2 * i + t] / divisor
        best, best_err = 0, abs(v - book[0])
        for c in range(1, 16):
            err = abs(v - book[c])
            if err < best_err:
                best, best_err = c, err
        x_hat[2 * i + t] = book[best] * a
        pair = (pair << 4) | best
    packed[i] = pair
