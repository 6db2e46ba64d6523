from pathlib import Path

import pytest
import yaml

from loanrisk.errors import ProfileError
from loanrisk.profiles import builtin_profiles, load_profile
from loanrisk.profiles.loader import profile_fingerprint

MINIMAL = {
    "name": "mybank",
    "id": {"column": "application_id"},
    "vintage": "booked",
    "target": {"column": "status", "bad": ["DEFAULT"], "good": ["REPAID"], "unknown": ["OPEN"]},
    "columns": {
        "application_id": {"parser": "text", "role": "id"},
        "amount": {"parser": "number", "required": True, "min": 0, "description": "loan amount"},
        "income": {"parser": "number", "description": "income"},
        "booked": {"parser": "month", "role": "vintage"},
        "status": {"parser": "text", "role": "target", "required": True},
        "paid_total": {"parser": "number", "role": "leakage"},
    },
    "derived": {"amount_to_income": {"op": "ratio", "inputs": ["amount", "income"]}},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.unit
def test_builtin_lendingclub_profile():
    assert "lendingclub" in builtin_profiles()
    profile = load_profile("lendingclub")
    assert profile.required == ["loan_amnt", "term", "annual_inc", "loan_status"]
    assert "total_pymnt" in profile.leakage_columns
    assert not set(profile.gold_features) & set(profile.leakage_columns)
    assert profile.describe("fico_mid") == "the FICO score"


@pytest.mark.unit
def test_user_profile_loads_from_a_path(tmp_path: Path):
    profile = load_profile(write(tmp_path, MINIMAL))
    assert profile.name == "mybank"
    assert profile.gold_features == ["amount", "income", "amount_to_income"]
    assert profile_fingerprint(profile) != profile_fingerprint(load_profile("lendingclub"))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["columns"]["amount"].update(parser="money"), "columns.amount.parser"),
        (lambda d: d["target"].update(column="outcome"), "target column 'outcome' is not declared"),
        (
            lambda d: d["derived"]["amount_to_income"].update(inputs=["amount", "nope"]),
            "uses undeclared column 'nope'",
        ),
        (
            lambda d: d["derived"]["amount_to_income"].update(inputs=["amount", "paid_total"]),
            "leakage column 'paid_total'",
        ),
        (lambda d: d["target"].update(good=["DEFAULT"]), "listed as bad and good"),
        (lambda d: d["columns"]["income"].update(colour="red"), "columns.income.colour"),
        (lambda d: d["columns"]["booked"].update(role="feature"), "a date cannot be a feature"),
        (lambda d: d.update(vintage="amount"), "must use the 'month' parser"),
        (lambda d: d.update(name="b" * 65), "name: String should have at most 64 characters"),
        (
            lambda d: d["columns"].update({"a" * 64: {"parser": "number", "role": "info"}}),
            "column names longer than 63 bytes (PostgreSQL's limit",
        ),
    ],
)
def test_profile_mistakes_are_named(tmp_path: Path, change, message):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    change(data)
    with pytest.raises(ProfileError, match="problem") as info:
        load_profile(write(tmp_path, data))
    assert message in str(info.value)
    assert str(tmp_path / "profile.yaml") in str(info.value)


@pytest.mark.unit
def test_profile_not_yaml_or_missing(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="neither a built-in profile"):
        load_profile(tmp_path / "absent.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ProfileError, match="must be a YAML mapping"):
        load_profile(bad)
