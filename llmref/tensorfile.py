"""safetensors files written canonically and read defensively.

Layout (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
header length, a JSON header mapping each tensor name to {dtype, shape, data_offsets} plus
an optional "__metadata__" of string pairs, then the raw little-endian tensor bytes.

Canonical writing: keys sorted, compact separators, tensors laid out in sorted-name order,
the header padded with spaces to a multiple of 8 bytes. The same tensors and metadata give
the same bytes in every process and on every machine (the Rust writer orders metadata by
a per-process hash map, so its bytes, and every SHA-256 of them, change per run).

Defensive reading: every problem is a `TensorFileError` naming the file and what is wrong
(not a regular file, a header larger than the file, a bad JSON, offsets outside the data,
a size that does not match dtype x shape), never a traceback or a hang on a FIFO.
"""
import json
import os
import stat
from functools import lru_cache
from pathlib import Path

import numpy as np

from llmref.dtypes import FORMATS

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit


@lru_cache(maxsize=None)
def _codes() -> dict:
    """safetensors dtype code -> NumPy dtype. Built on first use, not at import: the bfloat16
    dtype object imports ml_dtypes, 1 s, which a process that reads no tensor (the parent of
    a parallel check) need not pay."""
    codes = {f.safetensors: f.numpy for f in FORMATS.values()}
    codes.update({"I64": np.dtype("int64"), "I32": np.dtype("int32"), "I16": np.dtype("int16"),
                  "I8": np.dtype("int8"), "U8": np.dtype("uint8"), "BOOL": np.dtype("bool"),
                  "U16": np.dtype("uint16"), "U32": np.dtype("uint32"), "U64": np.dtype("uint64")})
    return codes


@lru_cache(maxsize=None)
def _names() -> dict:
    """NumPy dtype -> safetensors dtype code."""
    return {dtype: code for code, dtype in _codes().items()}


class TensorFileError(ValueError):
    """A safetensors file that cannot be read; the message starts with the file's name."""


def dumps(tensors: dict, metadata: dict) -> bytes:
    """Canonical safetensors bytes for {name: ndarray} and {str: str} metadata."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        if arr.dtype not in _names():
            raise TypeError(f"{name}: dtype {arr.dtype} has no safetensors code")
        data = arr.tobytes()  # little-endian on every platform NumPy wheels are built for
        header[name] = {"dtype": _names()[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def read_bytes(path) -> bytes:
    """The bytes of a regular file; anything else (missing, directory, FIFO, symlink loop,
    unreadable) is a TensorFileError naming it."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TensorFileError(f"{path.name}: missing") from None
    except OSError as exc:
        raise TensorFileError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise TensorFileError(f"{path.name}: not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise TensorFileError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None


def loads(data: bytes, where: str = "<bytes>"):
    """({name: ndarray}, metadata) from safetensors bytes; arrays are read-only views."""
    if len(data) < 8:
        raise TensorFileError(f"{where}: too short to be a safetensors file ({len(data)} bytes)")
    size = int.from_bytes(data[:8], "little")
    if size > MAX_HEADER_BYTES or 8 + size > len(data):
        raise TensorFileError(f"{where}: header claims {size} bytes, the file has {len(data) - 8}")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, ValueError) as exc:
        raise TensorFileError(f"{where}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise TensorFileError(f"{where}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TensorFileError(f"{where}: __metadata__ must map strings to strings")
    body = memoryview(data)[8 + size:]
    tensors = {name: _tensor(where, name, entry, body) for name, entry in header.items()}
    return tensors, metadata


def _tensor(where, name, entry, body):
    ok = (isinstance(entry, dict) and entry.get("dtype") in _codes()
          and isinstance(entry.get("shape"), list)
          and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"])
          and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
          and all(isinstance(o, int) and not isinstance(o, bool) for o in entry["data_offsets"]))
    if not ok:
        raise TensorFileError(f"{where}: tensor {name!r} has a malformed header entry")
    dtype = _codes()[entry["dtype"]]
    begin, end = entry["data_offsets"]
    count = int(np.prod(entry["shape"], dtype=np.int64)) if entry["shape"] else 1
    if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
        raise TensorFileError(f"{where}: tensor {name!r} offsets {begin}..{end} do not hold "
                              f"{entry['shape']} x {entry['dtype']} inside {len(body)} data bytes")
    return np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"])
