"""Fair and explainable decisions: adverse-action reasons that a regulator would accept,
proxies and protected attributes kept out of the model, a fairness report and gate, and
the profile's directions of risk held by every model family."""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from loanrisk.config import Settings, get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.modeling.monotone import violations
from loanrisk.modeling.recourse import find_recourse
from loanrisk.profiles import load_profile
from loanrisk.registry import Registry
from loanrisk.serving.schemas import application_fields
from tests import steps
from tests.support import KEY, Service

pytestmark = pytest.mark.integration


def profile_with_protected(folder: Path) -> Path:
    """The built-in LendingClub profile plus the generator's protected attribute."""
    text = (resources.files("loanrisk.profiles") / "lendingclub.yaml").read_text()
    column = (
        "  applicant_group: {parser: category, role: protected, "
        "description: a protected group (generated)}\n"
    )
    text = text.replace("name: lendingclub", "name: lendingclub_protected", 1)
    text = text.replace("\ncolumns:\n", "\ncolumns:\n" + column, 1)
    path = folder / "protected.yaml"
    path.write_text(text)
    return path


def home_settings(folder: Path, profile: Path, **training: object) -> Settings:
    settings = get_settings(home=folder / "home")
    settings.data.profile = str(profile)
    settings.training.trials = 0
    for key, value in training.items():
        setattr(settings.training, key, value)
    return settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("fair")
    profile = profile_with_protected(folder)
    loans = folder / "loans.csv.gz"
    write_generated(
        GeneratorConfig(
            rows=40_000, start="2015-01", months=24, seed=31, as_of="2020-01", protected=True
        ),
        loans,
    )
    applications = folder / "applications.csv"
    write_generated(
        GeneratorConfig(rows=8_000, start="2017-06", months=1, seed=32, protected=True),
        applications,
    )
    # Blank two inputs for a third of the applicants: a blank is never a reason.
    raw = pd.read_csv(applications, dtype=str, keep_default_na=False)
    blank = np.random.default_rng(0).random(len(raw)) < 0.33
    raw.loc[blank, ["revol_util", "inq_last_6mths"]] = ""
    raw.to_csv(applications, index=False)
    settings = home_settings(folder, profile, candidates=["lightgbm"])
    steps.ingest(settings, [str(loans)])
    trained = steps.train(settings)
    promoted = steps.promote(settings, force=True, reason="tests judge the gates themselves")
    return {
        "folder": folder,
        "profile": profile,
        "loans": loans,
        "applications": applications,
        "settings": settings,
        "trained": trained,
        "promoted": promoted,
    }


def test_protected_attributes_are_never_inputs_and_proxies_only_on_request(world, tmp_path):
    profile = load_profile(str(world["profile"]))
    assert profile.proxy_columns == ["zip_code", "addr_state"]
    bundle = Registry(world["settings"]).load_bundle(world["trained"].version)
    assert not {"applicant_group", "zip_code", "addr_state"} & set(bundle.spec.columns)
    assert not bundle.reads("applicant_group")
    engine = sa.create_engine(f"sqlite:///{world['settings'].home / 'warehouse.db'}")
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT count(applicant_group) FROM silver_loans")).scalar()
        gold = [c["name"] for c in sa.inspect(conn).get_columns("gold_loan_features")]
    engine.dispose()
    assert kept > 30_000 and "applicant_group" not in gold
    # Opting in uses the proxies, warns, and still never gives one as a reason.
    settings = home_settings(tmp_path, world["profile"], candidates=["lightgbm"], use_proxies=True)
    steps.ingest(settings, [str(world["loans"])])
    trained = steps.train(settings)
    opted = Registry(settings).load_bundle(trained.version)
    assert {"zip_code", "addr_state"} <= set(opted.spec.columns)
    assert any("proxy columns used" in w for w in trained.warnings)
    raw = pd.read_csv(world["applications"], dtype=str, keep_default_na=False).head(3_000)
    answers = opted.fast().score(raw.drop(columns=["loan_status"]).to_dict("records"))
    codes = {r["code"] for a in answers for r in (a["reasons"] or [])}
    assert codes and not {"zip_code", "addr_state", "applicant_group"} & codes


def test_reasons_on_declines_are_specific_given_and_the_same_everywhere(world):
    settings, applications = world["settings"], world["applications"]
    profile = load_profile(str(world["profile"]))
    run = steps.score(settings, str(applications))
    output = pd.read_parquet(run.output)
    declined = output[output["decision"] == "decline"]
    assert len(declined) >= 2_000, len(declined)
    raw = pd.read_csv(applications, dtype=str, keep_default_na=False)
    raw.index = raw.index + 1  # source rows count from 1
    groups = {code: set(g.columns) for code, g in profile.reasons.groups.items()}
    forbidden = {"zip_code", "addr_state", "applicant_group", *profile.reasons.never}
    inputs_of = {n: set(d.inputs) for n, d in profile.derived.items()}
    checked = 0
    for row in declined.head(2_000).itertuples():
        reasons = json.loads(row.reasons)
        assert 1 <= len(reasons) <= 4
        codes = [r["code"] for r in reasons]
        assert len(codes) == len(set(codes))
        for reason in reasons:
            assert reason["reason"] and reason["contribution"] > 0
            assert reason["code"] not in forbidden
            members = groups.get(reason["code"], {reason["code"]})
            assert not any(reason["code"] in g for c, g in groups.items() if c != reason["code"])
            given = raw.loc[row.source_row]
            raw_members = set().union(*(inputs_of.get(m, {m}) for m in members))
            assert any(given.get(m, "") != "" for m in raw_members), (reason, row.source_row)
        was_blank = raw.loc[row.source_row, "revol_util"] == ""
        assert not (was_blank and "utilisation" in codes)
        if raw.loc[row.source_row, "inq_last_6mths"] == "":
            assert "inquiries" not in codes
        checked += 1
    assert checked == 2_000

    # The API answers the same applications with the same reasons, and logs them.
    sample = declined.head(2_000)
    service = Service(
        settings.home,
        LOANRISK_DATA__PROFILE=str(world["profile"]),
        LOANRISK_SERVING__MAX_APPLICATIONS="100",
    )
    try:
        service.wait_ready()
        answers = []
        fields = set(application_fields(profile))  # what an application may send
        records = [
            {k: v for k, v in raw.loc[i].items() if v != "" and k in fields}
            for i in sample["source_row"]
        ]
        with httpx.Client(base_url=service.url, timeout=30) as client:
            for start in range(0, len(records), 100):
                response = client.post(
                    "/v1/predict",
                    json=records[start : start + 100],
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                assert response.status_code == 200, response.text[:500]
                answers += response.json()["predictions"]
            explained = client.post(
                "/v1/predict?explain=true",
                json=records[:20],
                headers={"Authorization": f"Bearer {KEY}"},
            ).json()["predictions"]
            # The officer page shows the same reasons for every one of them.
            on_page = []
            for record in records:
                page = client.post("/", data=record | {"api_key": KEY}).text
                listed = re.search(r'<ul id="reasons">(.*?)</ul>', page, re.S)
                assert listed, page[-2000:]
                on_page.append(re.findall(r"<li>(.*?) <span", listed.group(1)))
            logged = client.get(
                f"/v1/predictions/{answers[0]['prediction_id']}",
                headers={"Authorization": f"Bearer {KEY}"},
            ).json()
    finally:
        service.stop()
    batch = [json.loads(r) for r in sample["reasons"]]
    assert [a["reasons"] for a in answers] == batch
    # The log holds the same reasons for every one of them, batch rows and API rows.
    engine = sa.create_engine(f"sqlite:///{settings.home / 'warehouse.db'}")
    with engine.connect() as conn:
        log = pd.read_sql("SELECT prediction_id, source, reasons FROM predictions", conn)
    engine.dispose()
    logged_by_id = dict(zip(log["prediction_id"], log["reasons"].map(json.loads), strict=True))
    assert [logged_by_id[a["prediction_id"]] for a in answers] == batch
    assert [logged_by_id[i] for i in sample["prediction_id"]] == batch
    assert [a["decision"] for a in answers] == ["decline"] * len(answers)
    assert logged["reasons"] == answers[0]["reasons"]
    # Recourse on request: each decline says what change in its terms would be approved.
    assert all(
        a["recourse"].startswith(("Would be approved with", "No change in the requested"))
        for a in explained
    )
    assert [a["reasons"] for a in explained] == batch[:20]
    statements = [[html.escape(r["reason"]) for r in reasons] for reasons in batch]
    assert on_page == statements


def test_the_fairness_report_measures_the_disadvantaged_group_and_the_gate_names_it(world):
    settings, trained = world["settings"], world["trained"]
    table = trained.fairness["applicant_group"]
    # Direct computation from the run's test predictions and the file's groups.
    client = Registry(settings).client
    import mlflow

    predictions = pd.read_parquet(mlflow.artifacts.download_artifacts(trained.test_predictions))
    raw = pd.read_csv(world["loans"], dtype=str, keep_default_na=False)[["id", "applicant_group"]]
    raw = raw.drop_duplicates("id")  # as ingestion keeps the first row of a repeated id
    joined = predictions.merge(raw.rename(columns={"id": "loan_id"}), on="loan_id")
    assert len(joined) == len(predictions)
    approved = joined["pd"] < trained.threshold
    rates = approved.groupby(joined["applicant_group"]).mean()
    assert table["reference_group"] == rates.idxmax() == "A"
    assert table["min_adverse_impact_ratio"] == pytest.approx(rates.min() / rates.max(), abs=1e-9)
    assert table["groups"]["B"]["approval_rate"] < table["groups"]["A"]["approval_rate"]
    card = Path(mlflow.artifacts.download_artifacts(f"runs:/{trained.run_id}/model_card.md"))
    assert "## Fairness (test window)" in card.read_text() and "| B |" in card.read_text()
    names = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"fairness.json", "fairness_by_group.json"} <= names
    # The gate: refused below the threshold, naming the attribute and the group.
    settings.promotion.min_adverse_impact_ratio = 0.999
    steps.train(settings, if_new_data=False)
    refused = steps.promote(settings)
    assert not refused.promoted
    assert "adverse impact ratio of applicant_group=B against applicant_group=A" in refused.reason


@pytest.mark.parametrize("family", ["logistic_regression", "xgboost", "lightgbm"])
def test_every_family_keeps_the_profiles_directions_of_risk(world, tmp_path, family):
    settings = home_settings(tmp_path, world["profile"], candidates=[family])
    steps.ingest(settings, [str(world["loans"])])
    trained = steps.train(settings)
    bundle = Registry(settings).load_bundle(trained.version)
    raw = pd.read_csv(world["applications"], dtype=str, keep_default_na=False)
    sample = raw.drop(columns=["loan_status"]).sample(500, random_state=1)
    assert violations(bundle, sample) == []


def test_an_unconstrained_model_that_breaks_a_direction_is_refused(world, tmp_path):
    settings = home_settings(
        tmp_path, world["profile"], candidates=["lightgbm"], monotone_constraints=False
    )
    steps.ingest(settings, [str(world["loans"])])
    steps.train(settings)
    refused = steps.promote(settings)
    failed = [c["check"] for c in refused.checks if not c["passed"]]
    assert any(c.startswith("monotone in the profile's directions of risk: ") for c in failed)
    assert not refused.promoted


def test_recourse_names_a_change_that_is_approved(world):
    bundle = Registry(world["settings"]).load_bundle(world["trained"].version)
    scorer = bundle.fast()
    raw = pd.read_csv(world["applications"], dtype=str, keep_default_na=False).head(1_500)
    records = [
        {k: v for k, v in r.items() if v != "" and bundle.reads(k)} for r in raw.to_dict("records")
    ]
    declined = [
        r for r, a in zip(records, scorer.score(records), strict=True) if a["decision"] == "decline"
    ][:100]
    found = 0
    for record in declined:
        change, sentence = find_recourse(scorer, record)
        if change is None:
            assert sentence.startswith("No change in the requested terms")
            continue
        found += 1
        assert set(change) <= {"loan_amnt", "term"} and sentence.startswith("Would be approved")
        assert scorer.score([record | change])[0]["decision"] == "approve"
    assert found > 0
