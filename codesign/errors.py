"""Exceptions the user sees: each message names the problem and the fix.

The CLI prints a CodesignError as one clean line (no traceback); anything else is a bug.
"""


class CodesignError(Exception):
    """A user-facing error: bad input, missing tool, infeasible request."""


class DataError(CodesignError):
    """A dataset is missing, corrupt or in the wrong format."""


class ToolMissingError(CodesignError):
    """An external tool (yosys, verilator, vivado, finn) is not available."""


class UnsupportedError(CodesignError):
    """A model contains an op or configuration the compiler does not support."""


class FoldingError(CodesignError):
    """A folding (PE/SIMD) is illegal or a target cannot be met."""
