"""Dataset profiles: the built-in ``lendingclub`` and user profile files."""

from loanrisk.profiles.loader import builtin_profiles, load_profile
from loanrisk.profiles.model import ColumnSpec, DerivedSpec, Parser, Profile, Role, TargetSpec

__all__ = [
    "ColumnSpec",
    "DerivedSpec",
    "Parser",
    "Profile",
    "Role",
    "TargetSpec",
    "builtin_profiles",
    "load_profile",
]
