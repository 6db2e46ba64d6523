"""Request and response schemas. The application schema is built from the dataset profile.

Unknown fields are refused (422) rather than ignored, so a misspelt field name cannot
silently become a missing value. Values may be sent raw (``"13.56%"``, ``" 36 months"``)
or converted (``0.1356``, ``36``); each is checked with the profile's parser and bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)

from loanrisk.data.scalar import clean, parse_value
from loanrisk.profiles.model import NOT_INPUTS, NUMERIC_PARSERS, ColumnSpec, Profile
from loanrisk.serving.bodies import ID_PATTERN, text_problem

CLIENT_ID_MAX = 200
TEXT_MAX = 200  # characters in any one text value of an application (all are stored)


def _storable(limit: int) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None:
            problem = text_problem(value, limit)
            if problem is not None:
                raise ValueError(problem)
        return value

    return check


StoredText = Annotated[str, AfterValidator(_storable(CLIENT_ID_MAX))]

EXAMPLE: dict[str, Any] = {
    "loan_amnt": 12000,
    "term": " 36 months",
    "int_rate": "13.56%",
    "installment": 407.6,
    "grade": "C",
    "sub_grade": "C1",
    "emp_length": "10+ years",
    "home_ownership": "MORTGAGE",
    "annual_inc": 72000,
    "verification_status": "Source Verified",
    "issue_d": "Dec-2018",
    "purpose": "debt_consolidation",
    "zip_code": "860xx",
    "addr_state": "AZ",
    "dti": 18.2,
    "delinq_2yrs": 0,
    "earliest_cr_line": "Aug-2003",
    "fico_range_low": 700,
    "fico_range_high": 704,
    "inq_last_6mths": 1,
    "open_acc": 11,
    "pub_rec": 0,
    "revol_bal": 15000,
    "revol_util": "54.3%",
    "total_acc": 25,
    "mort_acc": 2,
    "pub_rec_bankruptcies": 0,
    "application_type": "Individual",
}


def application_fields(profile: Profile) -> dict[str, ColumnSpec]:
    """Fields an application may carry: everything but the target and leakage columns."""
    return {n: c for n, c in profile.columns.items() if c.role not in NOT_INPUTS}


def plainly_valid(profile: Profile, text_limit: int = TEXT_MAX) -> Callable[[Any], bool]:
    """A cheap test that an application needs no validation beyond what scoring does.

    True when every key is a known field, every value is ``None`` or a plain JSON scalar of
    the field's type, known categories are respected and required fields are present: then
    the pydantic model could only reject a value the scorer's own parsers reject too (with
    the same message). Anything else goes through the pydantic model, which names each
    problem. The service uses it to skip a second parse on the hot path. (Bodies reach it
    through ``bodies.parse_json``, which has already refused NULs, lone surrogates and
    non-finite numbers.)
    """
    specs = application_fields(profile)
    numeric = {n for n, spec in specs.items() if spec.parser in NUMERIC_PARSERS}
    categories = {
        n: frozenset(spec.categories)
        for n, spec in specs.items()
        if spec.categories and spec.out_of_range == "reject"
    }
    required = [n for n, spec in specs.items() if spec.required and n != profile.target.column]
    numbers = (str, int, float)

    def valid(item: Any) -> bool:
        if type(item) is not dict:
            return False
        for name, value in item.items():
            if value is None:
                continue
            kind = type(value)
            if kind is str and len(value) > text_limit:
                return False
            if name in numeric:
                if kind not in numbers:
                    return False
            elif name in specs:
                if kind is not str:
                    return False
                allowed = categories.get(name)
                if allowed is not None and clean(value) not in allowed:
                    return False
            elif name != "client_id" or kind is not str or len(value) > CLIENT_ID_MAX:
                return False
        return all(item.get(name) is not None for name in required)

    return valid


def application_model(profile: Profile, text_limit: int = TEXT_MAX) -> type[BaseModel]:
    """A pydantic model of one application, from the profile.

    Text values longer than ``text_limit``, ``true``/``false`` for a number, NUL
    characters and lone surrogates are refused: everything accepted is stored as sent."""
    specs = application_fields(profile)
    fields: dict[str, Any] = {}
    for name, spec in specs.items():
        required = spec.required and name != profile.target.column
        kind: Any = float | str if spec.parser in NUMERIC_PARSERS else str
        if not required:
            kind = kind | None
        extra: dict[str, Any] = {}
        if spec.categories:
            extra["enum_values"] = spec.categories
        bounds = (
            ""
            if spec.min is None and spec.max is None
            else (
                f" Range {spec.min:g}..{spec.max:g}"
                if spec.min is not None and spec.max is not None
                else ""
            )
        )
        text = spec.description or name
        description = f"{text[:1].upper()}{text[1:]} ({spec.parser.value}).{bounds}"
        if spec.categories:
            description += f" One of: {', '.join(spec.categories)}."
        fields[name] = (
            kind,
            Field(
                ... if required else None, description=description, json_schema_extra=extra or None
            ),
        )
    fields["client_id"] = (
        StoredText | None,
        Field(
            None,
            max_length=CLIENT_ID_MAX,
            description="Your own customer or application reference; outcomes can be "
            "reported against it later.",
        ),
    )

    numeric = {n for n, spec in specs.items() if spec.parser in NUMERIC_PARSERS}

    def raw(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in numeric:
            raise ValueError(f"{str(value).lower()} is not a number")
        if isinstance(value, str):
            problem = text_problem(value, text_limit)
            if problem is not None:
                raise ValueError(problem)
        return value

    def check(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
        spec = specs.get(info.field_name or "")
        if spec is None or value is None:
            return value
        typed, problem = parse_value(value, spec)
        if problem is not None:
            raise ValueError(problem)
        if spec.required and typed is None:
            raise ValueError("required value is missing")
        return value

    validators = {
        "refuse_unstorable": field_validator(*specs, mode="before")(raw),
        "check_with_profile": field_validator(*specs, mode="after")(check),
    }
    examples: Any = {"examples": [EXAMPLE]}
    model: type[BaseModel] = create_model(
        "Application",
        __config__=ConfigDict(extra="forbid", json_schema_extra=examples),
        __validators__=validators,
        **fields,
    )
    return model


class ModelRef(BaseModel):
    name: str = Field(description="Registered model name.")
    version: str = Field(description="Registered version that produced the answer.")
    alias: str = Field(description="Alias the service serves.")


class Reason(BaseModel):
    """One principal reason for the PD (for a decline: an adverse-action reason)."""

    code: str = Field(description="The profile's reason code (a group of inputs or one input).")
    reason: str = Field(description="The statement for the applicant.")
    contribution: float = Field(
        description="How much it raises the PD's log-odds against the average applicant."
    )


class Prediction(BaseModel):
    """The answer for one application."""

    prediction_id: str = Field(description="Id of this prediction (use it to report outcomes).")
    loan_id: str | None = Field(description="The application's id, or a key derived from it.")
    client_id: str | None = Field(description="Your reference, as sent.")
    pd: float = Field(description="Probability of default (calibrated).", ge=0, le=1)
    default_class: int = Field(description="1 when PD is at or above the decision threshold.")
    decision: str = Field(description="'approve' or 'decline'.")
    grade: str = Field(description="Risk grade A (best) .. G from the model's master scale.")
    reasons: list[Reason] = Field(
        description="What raises this PD most, largest first (at most the profile's "
        "reasons.max; an input left blank is never a reason; proxies never are)."
    )
    model: ModelRef
    recourse: str | None = Field(
        default=None,
        description="With ?explain=true, for a decline: the smallest change to the "
        "requested terms that would be approved, or that none would.",
    )


class PredictResponse(BaseModel):
    request_id: str
    predictions: list[Prediction]


class OutcomeIn(BaseModel):
    """A realised outcome, for one prediction, client or loan."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prediction_id": "5f0c2b8e9d4a4f6b8c1d2e3f4a5b6c7d",
                    "defaulted": False,
                    "observed_at": "2021-06-30",
                }
            ],
            "anyOf": [
                {"required": [key], "properties": {key: {"type": "string"}}}
                for key in ("prediction_id", "client_id", "loan_id")
            ],
        },
    )

    prediction_id: str | None = Field(
        None, description="The prediction this outcome is for.", pattern=ID_PATTERN
    )
    client_id: StoredText | None = Field(
        None, description="Or: the client reference sent with it.", max_length=CLIENT_ID_MAX
    )
    loan_id: StoredText | None = Field(None, description="Or: the loan id.", max_length=200)
    defaulted: bool = Field(description="True if the loan defaulted (charged off).", strict=True)
    observed_at: date | None = Field(None, description="When it was observed (YYYY-MM-DD).")


class OutcomeOut(BaseModel):
    outcome_id: int
    matched_predictions: int = Field(description="Predictions this outcome joins to.")
