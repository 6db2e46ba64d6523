"""The service's cheap pre-check: only plainly valid applications skip the pydantic model."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from loanrisk.serving.schemas import application_model, plainly_valid
from tests.support import APPLICATION

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def plain():
    from loanrisk.profiles import load_profile

    return plainly_valid(load_profile("lendingclub"))


def test_a_plain_application_passes(plain, profile):
    assert plain(APPLICATION)
    assert plain({**APPLICATION, "client_id": "c-1", "dti": None})
    # Whatever passes the pre-check also passes the model (the pre-check is never looser).
    TypeAdapter(application_model(profile)).validate_python(APPLICATION)


@pytest.mark.parametrize(
    "change",
    [
        {"favourite_colour": "blue"},  # unknown field
        {"loan_amnt": True},  # not a plain number
        {"loan_amnt": [1, 2]},
        {"purpose": 5},  # text field given a number
        {"home_ownership": "CASTLE"},  # unknown category
        {"client_id": "x" * 201},
        {"client_id": 7},
        {"annual_inc": None},  # required
    ],
)
def test_anything_unusual_goes_through_the_model(plain, change):
    assert not plain({**APPLICATION, **change})


def test_missing_required_field_and_non_objects_go_through_the_model(plain):
    body = dict(APPLICATION)
    del body["annual_inc"]
    assert not plain(body)
    assert not plain([APPLICATION]) and not plain("text")
