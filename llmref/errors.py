"""The exceptions llmref raises. Each message names the argument, file or field at fault."""


class InputError(ValueError):
    """Bad input at a public boundary (ref, accel, audit): wrong rank, dtype, shape or value."""


class SpecError(ValueError):
    """A spec file that does not follow the schema: the message is 'FILE: FIELD: REASON'."""


class GoldenError(RuntimeError):
    """A golden file that is missing, tampered with, or does not match its manifest."""


class Unsupported(NotImplementedError):
    """Raised by an implementation under audit for a case it does not support (outcome UNSUPPORTED)."""
