"""The dataset profile: a declarative description of one loan dataset."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loanrisk.constants import BATCH_ID, LABEL, LOAN_ID, SOURCE_ROW, TARGET_RAW, VINTAGE, Label


class Parser(StrEnum):
    """How a raw text value becomes a typed value."""

    NUMBER = "number"  # '1,200.50', '$900' -> float
    INTEGER = "integer"  # '3', '3.0' -> whole number
    PERCENT = "percent"  # '13.56%' -> 0.1356; a bare number is taken as a fraction
    TERM_MONTHS = "term_months"  # ' 36 months', '36' -> 36
    EMP_LENGTH = "emp_length"  # '10+ years' -> 10, '< 1 year' -> 0, 'n/a' -> missing
    MONTH = "month"  # 'Dec-2015', '2015-12-01', '2015-12' -> first day of the month
    CATEGORY = "category"  # stripped text with a small set of values
    TEXT = "text"  # free text, never a model feature
    ZIP3 = "zip3"  # '860xx', '860' -> '860'


NUMERIC_PARSERS = frozenset(
    {Parser.NUMBER, Parser.INTEGER, Parser.PERCENT, Parser.TERM_MONTHS, Parser.EMP_LENGTH}
)
STRING_PARSERS = frozenset({Parser.CATEGORY, Parser.TEXT, Parser.ZIP3})


class Role(StrEnum):
    """What a column is for."""

    FEATURE = "feature"  # an application-time field the model may use
    ID = "id"
    VINTAGE = "vintage"
    TARGET = "target"
    LEAKAGE = "leakage"  # known only after origination: never a feature
    INFO = "info"  # kept in silver for people, never a feature (free text, ...)
    # Stands in for a protected characteristic (geography, ...): stored like a feature but
    # used only when training opts in (training.use_proxies), with a warning in the card.
    PROXY = "proxy"
    # A protected characteristic: kept in silver for fairness analysis, never a feature,
    # never an input of the model or the API.
    PROTECTED = "protected"


# Roles whose columns are not application inputs of the model or the API.
NOT_INPUTS = frozenset({Role.LEAKAGE, Role.TARGET, Role.PROTECTED})


class _Spec(BaseModel):
    """A part of a profile. Profiles travel inside packaged models: one pickled by an
    earlier loanrisk reads back with the defaults of fields added since."""

    model_config = ConfigDict(extra="forbid")

    def __setstate__(self, state: dict[Any, Any]) -> None:
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values:
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)


OutOfRange = Literal["reject", "missing", "clip"]


class ColumnSpec(_Spec):
    """One raw column."""

    parser: Parser
    role: Role = Role.FEATURE
    required: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    # Which way the PD must move as the value grows (credit practice; the models are
    # trained with it and promotion checks it).
    monotone: Literal["increasing", "decreasing"] | None = None
    missing: list[str] = Field(
        default_factory=list,
        description="Codes that mean 'no value' in this column (96 and 98 for 'unknown' in a "
        "count, 'XX', ...): read as missing, never rejected. Numbers match however they are "
        "written (98, 98.0).",
    )
    out_of_range: OutOfRange = Field(
        default="reject",
        description="A value outside min/max or the categories: 'reject' the row (kept in "
        "silver_rejects with the reason), set it 'missing', or 'clip' it to the bound.",
    )
    unit: Literal["fraction", "percent"] = Field(
        default="fraction",
        description="percent parser: how a bare number is written, 'fraction' (0.1602) or "
        "'percent' (16.02); '16.02%' reads as 0.1602 either way.",
    )

    @field_validator("missing", mode="before")
    @classmethod
    def _codes_as_text(cls, values: Any) -> Any:
        return as_text(values)

    @property
    def missing_numbers(self) -> frozenset[float]:
        """The missing codes that are numbers, matched on the value a number column holds."""
        found = set()
        for code in self.missing:
            try:
                found.add(float(code))
            except ValueError:
                continue
        return frozenset(found)

    @model_validator(mode="after")
    def _coherent(self) -> ColumnSpec:
        if self.unit != "fraction" and self.parser is not Parser.PERCENT:
            raise ValueError(f"unit applies to the percent parser only, not {self.parser.value!r}")
        if self.categories is not None and self.parser is not Parser.CATEGORY:
            raise ValueError(
                f"categories apply to the category parser only, not {self.parser.value!r}"
            )
        bounded = self.min is not None or self.max is not None or bool(self.categories)
        if self.out_of_range != "reject" and not bounded:
            raise ValueError(f"out_of_range {self.out_of_range!r} needs min, max or categories")
        if self.out_of_range == "clip" and self.parser not in NUMERIC_PARSERS:
            raise ValueError("out_of_range 'clip' applies to numeric columns only (min/max)")
        if (self.min is not None or self.max is not None) and self.parser not in NUMERIC_PARSERS:
            raise ValueError(f"min/max only apply to numeric parsers, not {self.parser.value!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.monotone is not None and self.parser not in NUMERIC_PARSERS:
            raise ValueError("monotone applies to numeric columns only")
        if self.role in (Role.FEATURE, Role.PROXY) and self.parser is Parser.TEXT:
            raise ValueError("free text cannot be a feature; give it role 'info'")
        if self.role in (Role.FEATURE, Role.PROXY) and self.parser is Parser.MONTH:
            raise ValueError(
                "a date cannot be a feature itself; give it role 'info' and derive from it "
                "(op months_between)"
            )
        return self


class IdSpec(_Spec):
    """The loan id, or how to derive a stable row key when a file has none."""

    column: str | None = None
    derive: Literal["content_hash"] = "content_hash"


class DefaultDate(_Spec):
    """How to date a loan's default event: a month column (the last payment) plus a lag."""

    column: str = Field(description="A month column: the last month the borrower paid.")
    lag_months: int = Field(
        default=0,
        ge=0,
        le=24,
        description="Months from that month to the default event (LendingClub charges a "
        "loan off 150 days past due: 5).",
    )


class TargetSpec(_Spec):
    """The outcome column, which raw values mean bad, good or not yet known, and (for
    loans still on the book) the performance window a label is defined over."""

    column: str
    bad: list[str]
    good: list[str]
    unknown: list[str] = Field(default_factory=list)
    horizon_months: int | None = Field(
        default=None,
        ge=1,
        le=120,
        description="Performance window: a loan is bad if it defaulted within this many "
        "months of issue, good if observed that long without defaulting (whatever its "
        "status now), else censored (no label). Empty: the final status is the label.",
    )
    default_date: DefaultDate | None = None

    @field_validator("bad", "good", "unknown", mode="before")
    @classmethod
    def _as_text(cls, values: Any) -> Any:
        """Numbers are fine (``bad: [1]``): a 0/1 outcome column is compared as text."""
        return as_text(values)

    @model_validator(mode="after")
    def _disjoint(self) -> TargetSpec:
        if not self.bad or not self.good:
            raise ValueError("target needs at least one 'bad' and one 'good' value")
        seen: dict[str, str] = {}
        for kind, values in (("bad", self.bad), ("good", self.good), ("unknown", self.unknown)):
            for value in values:
                key = normalise_token(value)
                if key in seen:
                    raise ValueError(f"target value {value!r} is listed as {seen[key]} and {kind}")
                seen[key] = kind
        return self

    def mapping(self) -> dict[str, Label]:
        """Normalised raw value -> label kind."""
        out: dict[str, Label] = {}
        for kind, values in ((Label.BAD, self.bad), (Label.GOOD, self.good)):
            out.update({normalise_token(v): kind for v in values})
        out.update({normalise_token(v): Label.UNKNOWN for v in self.unknown})
        return out


class ReasonGroup(_Spec):
    """Several model inputs given as one adverse-action reason, with its statement."""

    columns: list[str] = Field(min_length=1)
    statement: str = Field(min_length=1, description="What the applicant is told.")


class ReasonPolicy(_Spec):
    """How contributions become the reasons an applicant is given."""

    max: int = Field(default=4, ge=1, le=10, description="At most this many reasons.")
    groups: dict[str, ReasonGroup] = Field(default_factory=dict)
    never: list[str] = Field(
        default_factory=list, description="Inputs that are never given as a reason."
    )


class RecourseSpec(_Spec):
    """How an actionable input may change when looking for an approval: lower amounts
    down to a share of the request, or other values (a term)."""

    down_to: float | None = Field(default=None, gt=0, lt=1)
    values: list[float] = Field(default_factory=list)


class DerivedSpec(_Spec):
    """A feature computed from other columns at build time."""

    op: Literal["mean", "ratio", "months_between"]
    inputs: list[str]
    scale: float = 1.0
    description: str = ""
    monotone: Literal["increasing", "decreasing"] | None = None

    @model_validator(mode="after")
    def _arity(self) -> DerivedSpec:
        if len(self.inputs) != 2:
            raise ValueError(f"op {self.op!r} takes exactly two inputs, got {len(self.inputs)}")
        return self


RESERVED = frozenset({LOAN_ID, VINTAGE, LABEL, TARGET_RAW, BATCH_ID, SOURCE_ROW})


IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


class Profile(_Spec):
    """A dataset profile (see ``profiles/lendingclub.yaml`` for a commented example)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
    description: str = ""
    id: IdSpec = IdSpec()
    vintage: str | None = None
    target: TargetSpec
    columns: dict[str, ColumnSpec]
    derived: dict[str, DerivedSpec] = Field(default_factory=dict)
    reasons: ReasonPolicy = ReasonPolicy()
    # Actionable inputs (the requested terms) that recourse may change for a decline.
    recourse: dict[str, RecourseSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        names = set(self.columns)
        clash = (names | set(self.derived)) & RESERVED
        if clash:
            raise ValueError(f"column names {sorted(clash)} are reserved by the warehouse")
        # A column becomes a warehouse column: PostgreSQL cuts a longer name to 63 bytes
        # (with a notice only), so the table's column would not carry the profile's name.
        long = sorted(n for n in names | set(self.derived) if len(n.encode()) > IDENTIFIER_BYTES)
        if long:
            raise ValueError(
                f"column names longer than {IDENTIFIER_BYTES} bytes (PostgreSQL's limit for a "
                f"column name): {long}; name the column shorter and give the file's header "
                "under aliases"
            )
        both = names & set(self.derived)
        if both:
            raise ValueError(f"{sorted(both)} are declared both as columns and as derived")
        if self.id.column is not None and self.id.column not in names:
            raise ValueError(f"id column {self.id.column!r} is not declared under columns")
        if self.target.column not in names:
            raise ValueError(f"target column {self.target.column!r} is not declared under columns")
        if self.columns[self.target.column].role is not Role.TARGET:
            raise ValueError(f"target column {self.target.column!r} must have role 'target'")
        horizon = self.target.horizon_months
        if horizon is not None:
            dated = self.target.default_date
            if self.vintage is None or dated is None:
                raise ValueError(
                    "target.horizon_months needs a vintage (the issue month) and "
                    "target.default_date (how to date the default event)"
                )
            spec = self.columns.get(dated.column)
            if spec is None or spec.parser is not Parser.MONTH:
                raise ValueError(
                    f"target.default_date.column {dated.column!r} must be a declared "
                    "column with the 'month' parser"
                )
        if self.vintage is not None:
            spec = self.columns.get(self.vintage)
            if spec is None:
                raise ValueError(f"vintage column {self.vintage!r} is not declared under columns")
            if spec.parser is not Parser.MONTH:
                raise ValueError(f"vintage column {self.vintage!r} must use the 'month' parser")
        for name, derived in self.derived.items():
            for source in derived.inputs:
                if source not in names:
                    raise ValueError(f"derived feature {name!r} uses undeclared column {source!r}")
                if self.columns[source].role in (Role.LEAKAGE, Role.TARGET, Role.PROTECTED):
                    raise ValueError(f"derived feature {name!r} uses leakage column {source!r}")
            wanted_month = derived.op == "months_between"
            for source in derived.inputs:
                is_month = self.columns[source].parser is Parser.MONTH
                if is_month != wanted_month:
                    raise ValueError(
                        f"derived feature {name!r}: op {derived.op!r} "
                        f"{'needs' if wanted_month else 'cannot use'} month column {source!r}"
                    )
        inputs = set(self.gold_features)
        grouped: dict[str, str] = {}
        for code, group in self.reasons.groups.items():
            for column in group.columns:
                if column not in inputs:
                    raise ValueError(f"reason group {code!r}: {column!r} is not a model input")
                if column in grouped:
                    raise ValueError(
                        f"{column!r} is in reason groups {grouped[column]!r} and {code!r}"
                    )
                grouped[column] = code
        for column in self.recourse:
            if column not in self.columns or self.columns[column].parser not in NUMERIC_PARSERS:
                raise ValueError(f"recourse: {column!r} must be a numeric column")
        for column in self.reasons.never:
            if column not in inputs:
                raise ValueError(f"reasons.never: {column!r} is not a model input")
        lookup: dict[str, str] = {}
        for name, spec in self.columns.items():
            for raw in [name, *spec.aliases]:
                key = normalise_header(raw)
                if key in lookup and lookup[key] != name:
                    raise ValueError(
                        f"header {raw!r} would map to both {lookup[key]!r} and {name!r}"
                    )
                lookup[key] = name
        return self

    @property
    def required(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.required]

    @property
    def feature_columns(self) -> list[str]:
        """Raw columns the model may use (proxies included: training decides), in order."""
        return [n for n, c in self.columns.items() if c.role in (Role.FEATURE, Role.PROXY)]

    def monotone(self, name: str) -> int:
        """+1 when the PD must not fall as input ``name`` grows, -1 when it must not rise,
        0 when the profile says nothing."""
        spec = self.columns.get(name) or self.derived.get(name)
        direction = getattr(spec, "monotone", None)
        return {"increasing": 1, "decreasing": -1}.get(direction or "", 0)

    @property
    def proxy_columns(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.role is Role.PROXY]

    @property
    def protected_columns(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.role is Role.PROTECTED]

    @property
    def leakage_columns(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.role is Role.LEAKAGE]

    @property
    def silver_columns(self) -> list[str]:
        """Typed columns stored in silver: every declared column but the id and target."""
        return [n for n, c in self.columns.items() if c.role not in (Role.ID, Role.TARGET)]

    @property
    def key_columns(self) -> tuple[list[str], list[str]]:
        """The application fields a derived loan id is computed from, by name: (numbers and
        months, text). Outcome, post-origination and protected columns are left out, so an
        application scored later gets the id the warehouse gave it."""
        fields = sorted(
            n for n, c in self.columns.items() if self.reads(n) and c.role is not Role.ID
        )
        numbers = [
            n
            for n in fields
            if self.columns[n].parser in NUMERIC_PARSERS or self.columns[n].parser is Parser.MONTH
        ]
        return numbers, [n for n in fields if n not in numbers]

    @property
    def gold_features(self) -> list[str]:
        """Model inputs in gold: feature columns then derived features."""
        return [*self.feature_columns, *self.derived]

    def header_lookup(self, *, applications: bool = False) -> dict[str, str]:
        """Normalised raw header (name or alias) -> profile column name; with
        ``applications``, only the columns an application is judged on (``reads``)."""
        return {
            normalise_header(raw): name
            for name, spec in self.columns.items()
            if not applications or self.reads(name)
            for raw in [name, *spec.aliases]
        }

    def reads(self, name: str) -> bool:
        """Whether scoring reads column ``name`` of an application: its id and the fields
        known when applying. Outcome, post-origination and protected columns are not read
        (not parsed, not required), so a scoring file exported with them, or with damaged
        values in them, is scored as the same applications sent to the service."""
        return self.columns[name].role not in NOT_INPUTS

    def describe(self, feature: str) -> str:
        """Plain-language text for a feature (used by reason codes)."""
        if feature in self.columns:
            return self.columns[feature].description or feature
        if feature in self.derived:
            return self.derived[feature].description or feature
        return feature


def as_text(values: Any) -> Any:
    """Values a profile compares with raw text, given in YAML as numbers or text: ``1.0``
    means the ``1`` a file holds."""
    if not isinstance(values, list):
        return values
    out = []
    for value in values:
        if isinstance(value, bool) or (isinstance(value, float) and value.is_integer()):
            out.append(str(int(value)))
        elif isinstance(value, int | float):
            out.append(str(value))
        else:
            out.append(value)
    return out


def normalise_header(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def normalise_token(value: str) -> str:
    return " ".join(value.split()).lower()
