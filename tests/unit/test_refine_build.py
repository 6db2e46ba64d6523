import pandas as pd
import pytest

from loanrisk.data.build import assert_no_leakage, build_features
from loanrisk.data.refine import check_columns, drop_duplicate_ids, refine
from loanrisk.data.scalar import application_key, refine_record
from loanrisk.errors import InputFileError, LoanriskError
from loanrisk.profiles import Profile


def raw_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return frame


GOOD = {
    "id": "1077501",
    "loan_amnt": "5000",
    "term": " 36 months",
    "int_rate": "10.65%",
    "installment": "162.87",
    "annual_inc": "24000",
    "issue_d": "Dec-2011",
    "earliest_cr_line": "Jan-1985",
    "fico_range_low": "735",
    "fico_range_high": "739",
    "loan_status": "Fully Paid",
    "total_pymnt": "5863.16",
    "revol_bal": "13648",
    "emp_length": "10+ years",
    "zip_code": "860xx",
}


@pytest.mark.unit
def test_refine_types_labels_and_leaves_input_untouched(profile: Profile):
    raw = raw_frame(
        [
            GOOD,
            {**GOOD, "id": "2", "loan_status": "Charged Off"},
            {**GOOD, "id": "3", "loan_status": "Current"},
        ]
    )
    before = raw.copy()
    result = refine(raw, profile)
    pd.testing.assert_frame_equal(raw, before)
    silver = result.silver
    assert list(silver["loan_id"]) == ["1077501", "2", "3"]
    assert list(silver["label"].astype("float").fillna(-1)) == [0, 1, -1]
    assert silver.loc[0, "term"] == 36
    assert silver.loc[0, "int_rate"] == pytest.approx(0.1065)
    assert silver.loc[0, "vintage"] == pd.Timestamp("2011-12-01")
    assert silver.loc[0, "zip_code"] == "860"
    assert result.rejects.empty


@pytest.mark.unit
def test_converted_forms_give_the_same_silver(profile: Profile):
    converted = {
        **GOOD,
        "term": 36,
        "int_rate": 0.1065,
        "issue_d": "2011-12-01",
        "emp_length": 10,
        "earliest_cr_line": "1985-01-01",
    }
    raw_result = refine(raw_frame([GOOD]), profile).silver
    converted_result = refine(raw_frame([converted]), profile).silver
    pd.testing.assert_frame_equal(raw_result, converted_result)


@pytest.mark.unit
def test_bad_rows_are_rejected_with_column_and_reason(profile: Profile):
    raw = raw_frame(
        [
            GOOD,
            {**GOOD, "id": "2", "annual_inc": "12,5k"},
            {**GOOD, "id": "3", "fico_range_low": "1000", "int_rate": "abc"},
            {**GOOD, "id": "4", "loan_amnt": ""},
            {**GOOD, "id": "5", "loan_status": "Paid??"},
            {**GOOD, "id": ""},
        ]
    )
    result = refine(raw, profile)
    assert list(result.silver["loan_id"]) == ["1077501"]
    rejects = result.rejects.set_index("source_row")
    assert rejects.loc[2, "column_name"] == "annual_inc"
    assert "'12,5k' is not a number" in rejects.loc[2, "reason"]
    assert "fico_range_low: '1000' is above the maximum 850" in rejects.loc[3, "reason"]
    assert "int_rate: 'abc' is not a percentage" in rejects.loc[3, "reason"]
    assert rejects.loc[4, "reason"] == "loan_amnt: required value is missing"
    assert "'Paid??' is not one of the" in rejects.loc[5, "reason"]
    assert rejects.loc[6, "reason"] == "id: the loan id is missing"
    assert len(result.silver) + len(result.rejects) == len(raw)


@pytest.mark.unit
def test_a_nul_character_rejects_the_row_in_both_paths_naming_the_field(profile: Profile):
    # A NUL marks a damaged export and PostgreSQL text cannot hold one: the row is refused
    # with the field named (free text, category, number), never stored or silently blanked.
    hostile = {
        2: ("emp_title", "boss\x00man"),
        3: ("home_ownership", "RENT\x00"),
        4: ("loan_amnt", "50\x0000"),
    }
    raw = raw_frame(
        [GOOD | {"emp_title": "teacher", "home_ownership": "RENT"}]
        + [GOOD | {"id": str(row), column: value} for row, (column, value) in hostile.items()]
    )
    result = refine(raw, profile)
    assert list(result.silver["loan_id"]) == ["1077501"]
    rejects = result.rejects.set_index("source_row")
    for row, (column, value) in hostile.items():
        assert rejects.loc[row, "reason"] == f"{column}: {value!r} contains a NUL character"
        typed, problems = refine_record(GOOD | {column: value}, profile)
        assert problems == {column: f"{value!r} contains a NUL character"}
        assert typed[column] is None
    applications = refine(raw.drop(columns=["loan_status"]), profile, applications=True)
    assert len(applications.silver) == 1 and len(applications.rejects) == 3


@pytest.mark.unit
def test_an_id_too_long_to_index_rejects_the_row_in_both_paths(profile: Profile):
    longest, too_long = "7" * 200, "ab" * 150
    result = refine(raw_frame([GOOD | {"id": longest}, GOOD | {"id": too_long}]), profile)
    assert list(result.silver["loan_id"]) == [longest]
    problem = "'abababababababababab'... is 300 characters long (an id has at most 200)"
    assert result.rejects.to_dict("records") == [
        {"source_row": 2, "loan_id": None, "column_name": "id", "reason": f"id: {problem}"}
    ]
    assert refine_record(GOOD | {"id": too_long}, profile)[1] == {"id": problem}
    assert refine_record(GOOD | {"id": longest}, profile)[1] == {}


@pytest.mark.unit
def test_two_headers_read_as_one_column_are_refused(profile: Profile):
    twice = ["id", "loan_amnt", "term", "loan_amnt"]
    with pytest.raises(InputFileError, match=r"columns 2 \('loan_amnt'\) and 4 \('loan_amnt'\)"):
        check_columns(twice, profile, source="f.csv")
    spelled = ["id", "Loan Amnt", "loan_amnt"]  # two spellings of one column
    with pytest.raises(InputFileError, match=r"^f.csv: columns 2 \('Loan Amnt'\) and 3"):
        check_columns(spelled, profile, source="f.csv")
    frame = pd.DataFrame([["1", "5000", "7000"]], columns=["id", "loan_amnt", "LOAN_AMNT"])
    with pytest.raises(InputFileError, match="both read as loan_amnt"):
        refine(frame, profile, applications=True)


@pytest.mark.unit
def test_duplicate_ids_keep_the_first_row(profile: Profile):
    raw = raw_frame([GOOD, {**GOOD, "loan_amnt": "7000"}, {**GOOD, "id": "9"}])
    refined = refine(raw, profile)
    deduped = drop_duplicate_ids(refined.silver, {"9"})
    assert list(deduped.silver["loan_amnt"]) == [5000.0]
    assert list(deduped.rejects["source_row"]) == [2, 3]
    assert set(deduped.rejects["column_name"]) == {"loan_id"}


@pytest.mark.unit
def test_files_without_id_get_stable_content_keys(profile: Profile):
    no_id = {k: v for k, v in GOOD.items() if k != "id"}
    first = refine(raw_frame([no_id]), profile).silver["loan_id"].iloc[0]
    reordered = raw_frame([dict(reversed(list(no_id.items())))])
    second = refine(reordered, profile).silver["loan_id"].iloc[0]
    changed = refine(raw_frame([{**no_id, "loan_amnt": "5001"}]), profile).silver["loan_id"]
    assert first == second and first.startswith("h")
    assert changed.iloc[0] != first
    # Only application fields count: the same application without its outcome and
    # post-origination columns (as it is scored), or with an empty field instead of no
    # field, gets the same id; so does one record on the scalar path.
    application = {k: v for k, v in no_id.items() if k not in ("loan_status", "total_pymnt")}
    scored = refine(raw_frame([application]), profile, applications=True).silver["loan_id"]
    assert scored.iloc[0] == first
    blank = refine(raw_frame([{**no_id, "purpose": ""}]), profile).silver["loan_id"]
    assert blank.iloc[0] == first
    typed, problems = refine_record(application, profile)
    assert not problems and application_key(typed, profile.key_columns) == first


@pytest.mark.unit
def test_applications_are_judged_on_the_fields_scoring_reads(profile: Profile):
    # A scoring file exported with outcome and post-origination columns, damaged there
    # (or a profile that requires one): the rows are scored as the same applications
    # without those columns, on both paths; a damaged field the model reads still refuses.
    damaged = {"loan_status": "Paid??", "total_pymnt": "abc", "last_pymnt_d": "Foo-2001"}
    read = {k: v for k, v in GOOD.items() if k not in ("loan_status", "total_pymnt")}
    files = refine(raw_frame([GOOD | damaged, read]), profile, applications=True)
    assert files.rejects.empty and len(files.silver) == 2
    assert files.silver["loan_amnt"].tolist() == [5000.0, 5000.0]
    assert files.silver["total_pymnt"].isna().all()  # not read, not kept
    assert refine_record(GOOD | damaged, profile) == refine_record(read, profile)
    assert refine_record(GOOD | damaged, profile)[1] == {}
    required = profile.model_copy(deep=True)
    required.columns["total_pymnt"].required = True
    check_columns(list(read), required, applications=True)
    with pytest.raises(InputFileError, match="total_pymnt missing"):
        check_columns(list(read), required)  # loans, not applications: required
    bad = refine(raw_frame([GOOD | damaged | {"annual_inc": "n.a."}]), profile, applications=True)
    assert bad.rejects["reason"].tolist() == ["annual_inc: 'n.a.' is not a number"]


@pytest.mark.unit
def test_missing_required_columns_name_missing_and_found(profile: Profile):
    with pytest.raises(InputFileError) as info:
        check_columns(["name", "age"], profile, source="people.csv")
    text = str(info.value)
    assert "loan_amnt, term, annual_inc, loan_status missing" in text
    assert "'name', 'age'" in text
    with pytest.raises(InputFileError, match="is the delimiter ';'"):
        check_columns(["loan_amnt;term;annual_inc;loan_status"], profile)


@pytest.mark.unit
def test_gold_has_application_time_features_only(profile: Profile):
    silver = refine(raw_frame([GOOD]), profile).silver
    gold = build_features(silver, profile)
    assert not set(gold.columns) & set(profile.leakage_columns)
    assert "total_pymnt" in silver.columns
    row = gold.iloc[0]
    assert row["fico_mid"] == 737.0
    assert row["credit_history_months"] == (2011 - 1985) * 12 + 11
    assert row["loan_to_income"] == pytest.approx(5000 / 24000)
    assert row["installment_to_income"] == pytest.approx(162.87 * 12 / 24000)
    assert list(gold.columns[:3]) == ["loan_id", "vintage", "label"]


@pytest.mark.unit
def test_build_works_on_one_application_without_label(profile: Profile):
    app = {k: v for k, v in GOOD.items() if k not in ("loan_status", "total_pymnt", "id")}
    with pytest.raises(InputFileError, match="loan_status missing"):
        refine(raw_frame([app]), profile)  # loan history needs its status column
    silver = refine(raw_frame([app]), profile, applications=True).silver
    assert silver["loan_id"].iloc[0].startswith("h")
    gold = build_features(silver.drop(columns=["label"]), profile)
    assert len(gold) == 1 and "label" not in gold.columns
    assert gold["fico_mid"].iloc[0] == 737.0


@pytest.mark.unit
def test_leakage_guard_refuses_post_origination_columns(profile: Profile):
    gold = build_features(refine(raw_frame([GOOD]), profile).silver, profile)
    assert_no_leakage(gold, profile)
    with pytest.raises(LoanriskError, match=r"leakage guard.*recoveries"):
        assert_no_leakage(gold.assign(recoveries=0.0), profile)
