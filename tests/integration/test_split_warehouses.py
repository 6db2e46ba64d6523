"""The same data gives the same split whichever warehouse it was read from."""

from __future__ import annotations

import pandas as pd
import pytest

from loanrisk.config import get_settings
from loanrisk.constants import VINTAGE
from loanrisk.modeling.split import split_data
from loanrisk.warehouse.engine import Warehouse
from loanrisk.warehouse.queries import read_gold
from tests import steps

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_sqlite_and_postgres_give_identical_splits(generated, postgres_url, tmp_path):
    splits = []
    for name, url in (("sqlite", None), ("postgres", postgres_url)):
        settings = get_settings(
            home=tmp_path / name, **({"warehouse": {"url": url}} if url else {})
        )
        steps.ingest(settings, [str(generated)])
        engine = Warehouse.open(settings).engine
        gold = read_gold(engine)
        engine.dispose()
        for undated in (False, True):  # out of time, and random when there is no vintage
            data = gold.assign(**{VINTAGE: pd.NaT}) if undated else gold
            split = split_data(data)
            splits.append(
                (
                    name,
                    split.kind,
                    [sorted(p["loan_id"]) for p in (split.train, split.valid, split.test)],
                )
            )
    by_kind = {}
    for _name, kind, parts in splits:
        by_kind.setdefault(kind, []).append(parts)
    assert set(by_kind) == {"out_of_time", "random"}
    for kind, both in by_kind.items():
        assert len(both) == 2 and both[0] == both[1], kind
