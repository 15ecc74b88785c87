"""Audit a function written for a framework's tensors as it is.

    import torch
    from llmref.adapters import torch_adapter

    @torch_adapter
    def softmax(x, axis):
        return torch.softmax(x, dim=axis)

The auditor feeds NumPy arrays (float inputs in the audited dtype, bfloat16 included) and
expects NumPy arrays back. An adapter converts every array input to the framework's tensor
on its device -- without a copy where the framework can share memory (torch on the CPU, any
DLPack consumer), bfloat16 through its bit pattern -- calls the function, and converts every
tensor it returns (one, a tuple, a list or a dict of them) back. Python scalars, str and
bytes pass through unchanged.

`declare(...)` (and every adapter's keyword arguments) states what the implementation
supports: the dtypes, the cases, the device. The auditor reports anything outside that as
UNSUPPORTED with the reason, not as a failure. A device that is not available here makes
every case UNSUPPORTED, naming the device.
"""
import functools
import inspect
from dataclasses import dataclass, field

import numpy as np

from llmref.dtypes import FORMATS
from llmref.errors import Unsupported

_BF16 = FORMATS["bfloat16"]


@dataclass(frozen=True)
class Declaration:
    framework: str = "numpy"
    device: str = "cpu"
    dtypes: tuple = ()   # evaluation dtypes supported; empty = all
    cases: tuple = ()    # case ids supported; empty = all
    skip: dict = field(default_factory=dict)  # case id -> reason it is not supported

    def unsupported(self, case_id: str, dtype: str) -> str:
        """Why this case at this dtype is outside the declaration ('' when inside)."""
        if self.dtypes and dtype not in self.dtypes:
            return f"declared dtypes are {list(self.dtypes)}, not {dtype}"
        if self.cases and case_id not in self.cases:
            return f"case {case_id} is not among the declared cases"
        return self.skip.get(case_id, "")


def declaration(fn) -> Declaration:
    return getattr(fn, "__llmref__", None) or Declaration()


def declare(fn=None, *, framework="numpy", device="cpu", dtypes=(), cases=(), skip=None):
    """Attach a Declaration to `fn` (usable as @declare or @declare(dtypes=[...]))."""
    def wrap(f):
        f.__llmref__ = Declaration(framework, device, tuple(dtypes), tuple(cases), dict(skip or {}))
        return f

    return wrap(fn) if fn is not None else wrap


def _adapter(framework, to_framework, from_framework, device_check):
    """Build an adapter decorator from the two conversions and a device availability check."""
    def adapter(fn=None, *, device="cpu", dtypes=(), cases=(), skip=None):
        def wrap(f):
            @functools.wraps(f)
            def adapted(**kwargs):
                why = device_check(device)
                if why:
                    raise Unsupported(f"{framework} device {device!r} is not available here: {why}")
                args = {k: to_framework(v, device) if isinstance(v, np.ndarray) else v
                        for k, v in kwargs.items()}
                return _map_outputs(f(**args), from_framework)

            adapted.__llmref__ = Declaration(framework, device, tuple(dtypes), tuple(cases), dict(skip or {}))
            return adapted

        return wrap(fn) if fn is not None else wrap

    adapter.__name__ = f"{framework}_adapter"
    adapter.__doc__ = (f"Decorator: `fn` receives {framework} tensors for array inputs and may "
                       "return tensors; keywords declare device, dtypes, cases and skip reasons.")
    return adapter


def _map_outputs(result, convert):
    if isinstance(result, tuple):
        return tuple(_map_outputs(r, convert) for r in result)
    if isinstance(result, dict):
        return {k: _map_outputs(v, convert) for k, v in result.items()}
    if isinstance(result, list):
        return [_map_outputs(r, convert) for r in result]
    return convert(result)


# --- torch -------------------------------------------------------------------------------

def numpy_to_torch(arr: np.ndarray, device="cpu"):
    """A torch tensor holding `arr`'s values; shares memory on the CPU (bfloat16 by its bits)."""
    import torch

    arr = np.ascontiguousarray(arr)
    if arr.dtype == _BF16.numpy:
        tensor = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    elif arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        tensor = torch.from_numpy(arr.astype(np.int64))  # torch has no wide unsigned kernels
    else:
        tensor = torch.from_numpy(arr)
    return tensor if device == "cpu" else tensor.to(device)


def torch_to_numpy(value):
    """NumPy from a torch tensor (bfloat16 as ml_dtypes' bfloat16, by its bits); other values
    unchanged."""
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu().contiguous()
    if value.dtype == torch.bfloat16:
        return value.view(torch.int16).numpy().view(_BF16.numpy)
    return value.numpy()


def _torch_device(device) -> str:
    import torch

    kind = str(device).split(":")[0]
    if kind == "cpu":
        return ""
    if kind == "cuda" and not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return "torch.backends.mps.is_available() is False"
    return ""


torch_adapter = _adapter("torch", numpy_to_torch, torch_to_numpy, _torch_device)


# --- JAX ---------------------------------------------------------------------------------

def _jax_in(arr, device):
    import jax
    import jax.numpy as jnp

    placed = jax.devices(device)[0] if device != "cpu" else jax.devices("cpu")[0]
    return jax.device_put(jnp.asarray(arr), placed)  # JAX's bfloat16 is ml_dtypes' bfloat16


def _jax_out(value):
    return np.asarray(value) if hasattr(value, "__jax_array__") or type(value).__module__.startswith(
        ("jax", "jaxlib")) else value


def _jax_device(device) -> str:
    import jax

    try:
        jax.devices(device)
    except RuntimeError as exc:
        return str(exc).splitlines()[0]
    return ""


jax_adapter = _adapter("jax", _jax_in, _jax_out, _jax_device)


# --- CuPy --------------------------------------------------------------------------------

def _cupy_in(arr, device):
    import cupy

    if arr.dtype == _BF16.numpy:
        raise Unsupported("cupy has no bfloat16 dtype")
    return cupy.asarray(arr)


def _cupy_out(value):
    return value.get() if type(value).__module__.startswith("cupy") else value


def _cupy_device(device) -> str:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "no CUDA device"
    except Exception as exc:  # no driver, no cupy
        return f"{type(exc).__name__}: {exc}"
    return ""


cupy_adapter = _adapter("cupy", _cupy_in, _cupy_out, _cupy_device)


# --- any DLPack producer -----------------------------------------------------------------

def from_dlpack(value):
    """NumPy from any object with __dlpack__ (torch, JAX, CuPy, ...); other values unchanged.
    bfloat16 arrives by its bits through torch, whose DLPack knows the type."""
    if not hasattr(value, "__dlpack__") or isinstance(value, np.ndarray):
        return value
    try:
        return np.from_dlpack(value)
    except (TypeError, BufferError, RuntimeError) as exc:  # bfloat16, or memory on a device
        try:
            import torch

            return torch_to_numpy(torch.from_dlpack(value))
        except ImportError:
            raise TypeError(f"cannot convert {type(value).__name__} through DLPack: {exc}") from None


def dlpack_adapter(fn=None, *, from_numpy, device="cpu", dtypes=(), cases=(), skip=None):
    """Decorator for any framework: `from_numpy(array)` makes its tensor (DLPack-capable),
    and whatever DLPack tensors the function returns come back as NumPy."""
    convert = _adapter("dlpack", lambda arr, _: from_numpy(arr), from_dlpack, lambda _: "")
    return convert(fn, device=device, dtypes=dtypes, cases=cases, skip=skip)


def as_numpy(value):
    """What the auditor compares: framework tensors a plain callable returns are converted
    (torch directly, anything else through DLPack); everything else is left as it is."""
    if type(value).__module__.startswith("torch"):
        return torch_to_numpy(value)
    if hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray):
        try:
            return from_dlpack(value)
        except TypeError:
            return value
    return value


def signature_problem(fn, names) -> str:
    """Why `fn` cannot be called with keyword arguments `names` ('' if it can): a spec name it
    does not accept, or a required parameter the spec does not pass. Checked once, before any
    case runs, so a misspelt argument is one clear error instead of a failure on every case."""
    try:
        sig = inspect.signature(fn)  # follows functools.wraps, so adapters show the original
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return ""
    params = list(sig.parameters.values())
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = {p.name for p in params if p.kind in by_keyword}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    missing = [] if takes_any else [n for n in names if n not in accepted]
    required = [p.name for p in params if p.default is inspect.Parameter.empty and (
        p.kind in by_keyword or p.kind is inspect.Parameter.POSITIONAL_ONLY) and p.name not in names]
    if not missing and not required:
        return ""
    parts = ([f"does not accept {missing}"] if missing else []) + (
        [f"requires {required}, which the spec does not pass"] if required else [])
    return (f"takes ({', '.join(str(p) for p in params)}) but {' and '.join(parts)}; "
            f"the spec calls it with ({', '.join(names)})")
