"""loanrisk: raw loan records to a governed, monitored probability-of-default service."""

from loanrisk.errors import (
    ConfigError,
    InputFileError,
    LoanriskError,
    ProfileError,
    WarehouseError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputFileError",
    "LoanriskError",
    "ProfileError",
    "WarehouseError",
    "__version__",
]
