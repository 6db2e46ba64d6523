"""The packaged model's fast path (dict -> vector -> booster) equals the frame path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loanrisk.data.build import build_features
from loanrisk.data.generate import GeneratorConfig, generate_blocks
from loanrisk.data.refine import refine
from loanrisk.modeling.answers import score_table
from loanrisk.modeling.estimators import fit_candidate
from loanrisk.modeling.evaluate import Calibrator, fit_master_scale
from loanrisk.modeling.features import fit_feature_spec, model_frame
from loanrisk.modeling.package import ScoringBundle
from loanrisk.modeling.split import split_data
from loanrisk.profiles import Profile
from loanrisk.profiles.model import normalise_header

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, dict]:
    from loanrisk.profiles import load_profile

    profile = load_profile("lendingclub")
    config = GeneratorConfig(rows=30_000, start="2014-01", months=12, seed=3, as_of="2019-01")
    loans = pd.concat([t.to_pandas() for t, _ in generate_blocks(config)], ignore_index=True)
    loans.index += 1
    gold = build_features(refine(loans, profile).silver, profile)
    split = split_data(gold, test_months=2, valid_months=2)
    spec = fit_feature_spec(split.train, profile)
    frames = {
        k: (model_frame(getattr(split, k), spec), getattr(split, k)["label"].to_numpy())
        for k in ("train", "valid")
    }
    return loans, {"profile": profile, "spec": spec, "frames": frames}


@pytest.mark.parametrize("name", ["logistic_regression", "lightgbm", "xgboost"])
def test_fast_path_equals_frame_path(data, real_data, name):
    loans, parts = data
    profile: Profile = parts["profile"]
    frames = parts["frames"]
    fit = fit_candidate(name, parts["spec"], frames["train"], frames["valid"], trials=0, seed=1)
    model = fit.candidate
    if hasattr(model, "set_reference"):
        model.set_reference(frames["train"][0])
    calibrator = Calibrator.fit(model.predict_raw(frames["valid"][0]), frames["valid"][1])
    bundle = ScoringBundle(
        profile,
        parts["spec"],
        model,
        calibrator,
        0.2,
        fit_master_scale(calibrator(model.predict_raw(frames["train"][0]))),
    )
    real = pd.read_csv(real_data, dtype=str, keep_default_na=False).head(3_000)
    generated = loans.sample(3_000, random_state=1).reset_index(drop=True)
    typed_json = generated.head(500).apply(_numbers_where_possible)  # as a JSON client sends
    for frame in (generated, real, typed_json):
        reference = bundle.predict(frame)
        fast = bundle.fast().score(frame.to_dict("records"))
        got = np.array([np.nan if r["pd"] is None else r["pd"] for r in fast])
        want = reference["pd"].to_numpy()
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.nanmax(np.abs(got - want)) < 1e-9
        assert [r["grade"] for r in fast] == [
            g if isinstance(g, str) else None for g in reference["grade"]
        ]
        assert [r["decision"] for r in fast] == [
            d if isinstance(d, str) else None for d in reference["decision"]
        ]
        assert [r["reasons"] for r in fast] == [
            r if isinstance(r, list) else None for r in reference["reasons"]
        ]
        assert [r["error"] is None for r in fast] == [e is None for e in reference["error"]]
        assert [r["loan_id"] for r in fast] == list(reference["loan_id"])  # derived ids too
    assert (
        sum(r["error"] is not None for r in bundle.fast().score(generated.to_dict("records"))) > 0
    )  # the dirty rows are refused on both paths
    _only_the_fields_matter(bundle, generated)
    _the_record_keeps_every_field_read_as_spelled(bundle, generated.head(200))


def _only_the_fields_matter(bundle: ScoringBundle, frame: pd.DataFrame) -> None:
    """A valid application cut down to ``FastScorer.fields`` gets the same answer (the
    monotonicity gate scores such cut-down records)."""
    scorer = bundle.fast()
    lookup = bundle.profile.header_lookup()
    answers = scorer.score(frame.to_dict("records"))
    valid = [r for r, a in zip(frame.to_dict("records"), answers, strict=True) if not a["error"]]
    cut = [
        {k: v for k, v in r.items() if lookup.get(normalise_header(k)) in scorer.fields}
        for r in valid
    ]
    assert 0 < len(scorer.fields) < len(bundle.profile.columns)
    assert len(cut[0]) < len(valid[0])
    keys = ("loan_id", "pd", "decision", "grade", "reasons", "error")
    want = [{k: a[k] for k in keys} for a in answers if not a["error"]]
    assert [{k: a[k] for k in keys} for a in scorer.score(cut)] == want


def _numbers_where_possible(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def _the_record_keeps_every_field_read_as_spelled(bundle: ScoringBundle, frame: pd.DataFrame):
    """Headers spelled otherwise ('Loan Amnt', 'ANNUAL_INC') are read, so the logged
    application (the decision record) holds them too, as sent; outcome columns are not."""
    spelled = {"loan_amnt": "Loan Amnt", "annual_inc": "ANNUAL_INC", "loan_status": "Loan Status"}
    plain = score_table(bundle, frame)
    renamed = score_table(bundle, frame.rename(columns=spelled))
    assert renamed["pd"].equals(plain["pd"]) and renamed["reasons"].equals(plain["reasons"])
    row = next(i for i, v in enumerate(plain["input"].to_pylist()) if v is not None)
    want, got = json.loads(plain["input"][row].as_py()), json.loads(renamed["input"][row].as_py())
    assert got["Loan Amnt"] == want["loan_amnt"] and got["ANNUAL_INC"] == want["annual_inc"]
    assert len(got) == len(want) and "Loan Status" not in got and "loan_status" not in want
