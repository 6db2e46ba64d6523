"""How raw values are written: the spellings, patterns and date formats that both parsers
read (``parsers``: a column at a time with Arrow; ``scalar``: one value in pure Python).

Patterns are written once for both engines: RE2 (Arrow) and Python's ``re`` read the same
syntax here (inline ``(?i)``, named groups, no look-around). Each integer pattern captures
its value in its first group.
"""

from __future__ import annotations

# Raw spellings of "no value" (after stripping), in the cases people write them.
_MISSING = ("", "na", "n/a", "nan", "null", "none", "<na>", "nat", "-", "NaN", "NaT", "N/a")
MISSING = frozenset(v for m in _MISSING for v in (m, m.upper(), m.title()))

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# Thousands separators, currency signs and spaces inside a number: removed before reading.
NUMBER_NOISE = r"[,$\s]"
TERM_MONTHS = r"(?i)^(?P<n>\d+)(?:\.0+)?\s*(?:months?)?$"  # "36 months", "60", "36.0"
EMP_YEARS = r"(?i)^(?P<n>\d+)(?:\.0+)?\s*\+?\s*(?:years?)?$"  # "10+ years", "3 year", "4"
UNDER_ONE_YEAR = r"(?i)^<\s*1\s*(?:years?)?$"  # "< 1 year": 0
ZIP3 = r"(?i)^(?P<z>\d{3})(?:xx|\d\d)?$"  # "945xx", "94501": "945"

# Months: tried in this order; a parse outside the plausible years is not a month.
MONTH_FORMATS = ("%b-%Y", "%b-%y", "%Y-%m-%d", "%Y-%m", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
FIRST_YEAR, LAST_YEAR = 1900, 2100
