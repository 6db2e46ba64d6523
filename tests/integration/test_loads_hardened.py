"""Loads that fail the way real infrastructure fails: web sources that answer 500 or never
answer, two ingests at once, a train killed after registering."""

from __future__ import annotations

import csv
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from loanrisk.config import get_settings
from loanrisk.constants import REGISTRATION_TAG, Table
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.errors import InputFileError, NothingToDo
from loanrisk.modeling.train import data_fingerprint
from loanrisk.registry import Registry
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.ingest import warehouse_status
from loanrisk.warehouse.queries import gold_state, read_gold
from tests import steps
from tests.integration.test_cli import run

pytestmark = pytest.mark.integration


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A web server that answers 500 to everything."""

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(500)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_web_source_that_fails_exits_75_in_one_line(tmp_path: Path, failing_server):
    result = run("ingest", f"{failing_server}/loans.csv", home=tmp_path / "home")
    assert result.returncode == 75, result.stderr
    assert "answered 500" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


def test_a_web_source_that_never_answers_times_out_with_75(tmp_path: Path, silent_server):
    started = time.monotonic()
    result = run(
        "ingest",
        f"{silent_server}/loans.csv",
        home=tmp_path / "home",
        env={"LOANRISK_INGEST__SOURCE_TIMEOUT_SECONDS": "2"},
    )
    assert result.returncode == 75, result.stderr
    assert "no answer within 2 s" in result.stderr
    assert time.monotonic() - started < 60


def _loans(folder: Path, name: str, **config: object) -> Path:
    path = folder / name
    write_generated(
        GeneratorConfig(**({"rows": 3000, "start": "2016-01", "months": 6, "seed": 3} | config)),
        path,
    )
    return path


def test_concurrent_ingests_of_one_file_give_one_batch_and_one_skip(warehouse_settings, tmp_path):
    loans = _loans(tmp_path, "loans.csv")
    Warehouse.open(warehouse_settings).engine.dispose()  # migrated before the race
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: steps.ingest(warehouse_settings, [str(loans)])[0][0], range(2))
        )
    assert sorted(r.skipped for r in results) == [False, True]
    status = warehouse_status(Warehouse.open(warehouse_settings).engine)
    assert status.batches == 1 and status.reconciled


def test_concurrent_ingests_sharing_loan_ids_both_load(warehouse_settings, tmp_path):
    first = _loans(tmp_path, "first.csv")
    # The same loans extracted later: same ids, other statuses and bytes.
    second = _loans(tmp_path, "second.csv", as_of="2021-01")
    Warehouse.open(warehouse_settings).engine.dispose()
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda f: steps.ingest(warehouse_settings, [str(f)])[0][0], [first, second])
        )
    assert not any(r.skipped for r in results)
    new = sum(r.rows_silver_new for r in results)
    assert new > 2900 and sum(r.rows_silver_updated for r in results) == new
    status = warehouse_status(Warehouse.open(warehouse_settings).engine)
    assert status.batches == 2 and status.reconciled
    assert status.tables["silver_loans"] == new


def test_values_postgres_cannot_hold_or_index_reject_their_rows_with_the_field_named(
    warehouse_settings, tmp_path
):
    # A damaged export: NULs in free text, a category, a number and an id, and an id too
    # long to index. PostgreSQL text cannot hold a NUL, nor a btree index a value over
    # ~2,700 bytes: this ingest used to stop with a traceback there.
    loans = _loans(tmp_path, "loans.csv")
    frame = pd.read_csv(loans, dtype=str, keep_default_na=False)
    hostile = {
        5: ("emp_title", "boss\x00man"),
        6: ("purpose", "car\x00"),
        7: ("loan_amnt", "1\x000"),
        8: ("id", "9\x009"),  # the reject row keeps no id, not this one
        9: ("id", np.random.default_rng(0).bytes(2000).hex()),  # 4,000 random characters
    }
    for row, (column, value) in hostile.items():
        frame.loc[row, column] = value
    frame.to_csv(loans, index=False)
    result = steps.ingest(warehouse_settings, [str(loans)])[0][0]
    assert result.rows_bronze == len(frame) and result.rows_rejected >= len(hostile)
    engine = Warehouse.open(warehouse_settings).engine
    with engine.connect() as conn:
        rejects = conn.execute(sa.text(f"SELECT source_row, reason, loan_id FROM {Table.REJECTS}"))
        reasons, ids = {}, {}
        for row, reason, loan_id in rejects:
            reasons[row], ids[row] = reason, loan_id
        stored = conn.execute(sa.text(f"SELECT count(*) FROM {Table.SILVER}")).scalar()
    for row, (column, value) in hostile.items():  # source rows count from 1
        if row < 9:
            assert reasons[row + 1] == f"{column}: {value!r} contains a NUL character"
    long = f"id: {hostile[9][1][:20]!r}... is 4,000 characters long (an id has at most 200)"
    assert reasons[10] == long
    assert ids[9] is None and ids[10] is None and ids[6] == frame.loc[5, "id"]
    assert stored == result.rows_silver_new == len(frame) - result.rows_rejected
    assert warehouse_status(engine).reconciled


def test_a_header_repeating_a_column_the_profile_does_not_read_loads(warehouse_settings, tmp_path):
    # Two columns of one name that no profile column reads (an export's two 'note' columns):
    # nothing is ambiguous, bronze keeps both values by position (this stopped ingest).
    loans = _loans(tmp_path, "loans.csv", rows=200)
    with loans.open(newline="") as source:
        rows = list(csv.reader(source))
    with loans.open("w", newline="") as target:
        csv.writer(target).writerows(
            [[*rows[0], "note", "note"]] + [[*row, "first", "second"] for row in rows[1:]]
        )
    result = steps.ingest(warehouse_settings, [str(loans)])[0][0]
    assert result.rows_bronze == 200 and result.columns_ignored == ["note", "note"]
    with Warehouse.open(warehouse_settings).engine.connect() as conn:
        payload = conn.execute(sa.text(f"SELECT payload FROM {Table.BRONZE} LIMIT 1")).scalar()
    assert json.loads(payload)[-2:] == ["first", "second"]


def test_nul_characters_in_an_outcomes_file_refuse_their_rows(warehouse_settings, tmp_path):
    source = tmp_path / "outcomes.csv"
    source.write_text(
        "id,defaulted,client_id\n123\x00,1,\n77,0,\n5,1,c\x00x\n78,bad\x00,\n", encoding="utf-8"
    )
    result = steps.outcomes(warehouse_settings, str(source))
    assert (result.rows, result.refused, result.stored) == (4, 3, 1)
    assert result.problems == [
        "row 1: id: '123\\x00' contains a NUL character",
        "row 3: client_id: 'c\\x00x' contains a NUL character",
        "row 4: defaulted: 'bad\\x00' contains a NUL character",
    ]
    with Warehouse.open(warehouse_settings).engine.connect() as conn:
        stored = conn.execute(sa.text(f"SELECT loan_id FROM {Table.OUTCOMES}")).scalars().all()
    assert stored == ["77"]


def test_an_outcomes_file_naming_a_column_twice_is_refused(sqlite_settings, tmp_path):
    source = tmp_path / "outcomes.csv"
    source.write_text("id,defaulted,ID\n1,1,2\n")
    with pytest.raises(InputFileError, match=r"columns 1 \('id'\) and 3 \('ID'\) read as one"):
        steps.outcomes(sqlite_settings, str(source))
    source.write_text("id,defaulted,note,note\n1,1,a,b\n")  # columns it does not read
    assert steps.outcomes(sqlite_settings, str(source)).stored == 1


@pytest.mark.parametrize(
    "warehouse", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_scores_of_one_file_at_once_give_one_run_and_one_skip(
    served_home, warehouse, request, tmp_path
):
    # A retried task overlapping the first: one scores, the other waits and skips (the
    # second died with an IntegrityError traceback, exit 1, on PostgreSQL).
    home = served_home[0].home  # its registry holds a production model
    url = (
        request.getfixturevalue("postgres_url")
        if warehouse == "postgres"
        else f"sqlite:///{tmp_path / 'warehouse.db'}"
    )
    settings = get_settings(home=home, warehouse={"url": url})
    applications = tmp_path / "applications.csv"
    write_generated(GeneratorConfig(rows=3000, start="2016-01", months=6, seed=8), applications)
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda _: steps.score(settings, str(applications), output_dir=tmp_path / "out"),
                range(2),
            )
        )
    assert sorted(r.skipped for r in runs) == [False, True]
    scored = next(r for r in runs if not r.skipped)
    with Warehouse.open(settings).engine.connect() as conn:
        counted = conn.execute(
            sa.text(f"SELECT count(*), count(DISTINCT prediction_id) FROM {Table.PREDICTIONS}")
        ).one()
    assert tuple(counted) == (scored.rows_scored, scored.rows_scored)
    assert {r.output for r in runs} == {scored.output}


def test_a_train_killed_after_registering_does_not_block_the_next(sqlite_settings, tmp_path):
    settings = sqlite_settings
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(
        settings,
        [
            str(
                _loans(
                    tmp_path, "loans.csv", rows=8000, start="2014-01", months=12, as_of="2019-01"
                )
            )
        ],
    )
    first = steps.train(settings)
    assert steps.promote(settings).promoted
    steps.ingest(
        settings,
        [
            str(
                _loans(
                    tmp_path,
                    "more.csv",
                    rows=8000,
                    start="2014-01",
                    months=12,
                    as_of="2019-01",
                    seed=9,
                )
            )
        ],
    )
    engine = Warehouse.open(settings).engine
    new_hash = data_fingerprint(read_gold(engine))["content_hash"]
    new_state = gold_state(engine)
    engine.dispose()
    # What a train on the new data leaves when it is killed between registering and moving
    # @staging: a version tagged with the new data's hash, still "pending", no alias.
    info = Registry(settings).get(first.version)
    Registry(settings)  # sets MLflow's tracking URI for the fluent calls below
    orphan = mlflow.register_model(
        f"models:/{settings.mlflow.model_name}/{first.version}",
        settings.mlflow.model_name,
        tags=info.tags
        | {"data_hash": new_hash, "gold_state": new_state, REGISTRATION_TAG: "pending"},
    ).version
    assert Registry(settings).by_alias("staging").version == first.version
    # The unfinished version does not count: the next scheduled train does the work.
    second = steps.train(settings, if_new_data=True)
    assert int(second.version) > int(orphan)
    assert Registry(settings).get(second.version).complete
    assert not Registry(settings).get(str(orphan)).complete
    assert Registry(settings).by_alias("staging").version == second.version
    with pytest.raises(NothingToDo, match=f"version {second.version} was trained"):
        steps.train(settings, if_new_data=True)
    assert steps.promote(settings).promoted
    assert Registry(settings).by_alias("production").version == second.version
