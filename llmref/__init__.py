"""llmref: an executable specification of the building blocks of large language models.

    import llmref
    report = llmref.audit("softmax", my_softmax, dtype="float32")
    assert report.passed, report.failures()
"""
from llmref.audit import Report, audit
from llmref.compare import Outcome
from llmref.errors import GoldenError, InputError, SpecError, Unsupported
from llmref.spec import load_spec

__version__ = "0.1.0"
__all__ = ["audit", "Report", "Outcome", "load_spec", "InputError", "SpecError", "GoldenError",
           "Unsupported", "__version__"]
