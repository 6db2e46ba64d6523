"""Shared fixtures: settings on a temporary home, generated files, real warehouses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from loanrisk.config import Settings, get_settings
from loanrisk.data.generate import GeneratorConfig, write_generated
from loanrisk.profiles import Profile, load_profile
from tests import steps

REAL_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "lendingclub_2007_2011_16col.csv"
)
POSTGRES_ADMIN_URL = os.environ.get(
    "LOANRISK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    # The tests own their settings: ignore a developer's LOANRISK_* variables.
    for key in list(os.environ):
        if key.startswith("LOANRISK_") and not key.startswith("LOANRISK_TEST_"):
            del os.environ[key]


@pytest.fixture
def profile() -> Profile:
    return load_profile("lendingclub")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sqlite_settings(home: Path) -> Settings:
    return get_settings(home=home)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 generated loans over 24 months (CSV.gz), extracted once every vintage's
    24-month performance window has passed, shared by the session."""
    out = tmp_path_factory.mktemp("gen") / "loans.csv.gz"
    write_generated(
        GeneratorConfig(rows=20_000, start="2016-01", months=24, seed=7, as_of="2020-01"), out
    )
    return out


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.fail(f"real data file missing: {REAL_DATA} (shared/ must sit beside the checkout)")
    return REAL_DATA


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    folder = tmp_path_factory.mktemp("service")
    loans = folder / "loans.csv"
    write_generated(
        GeneratorConfig(rows=15_000, start="2014-01", months=12, seed=6, as_of="2019-01"), loans
    )
    settings = get_settings(home=folder / "home")
    settings.training.trials = 0
    settings.training.candidates = ["logistic_regression"]
    steps.ingest(settings, [str(loans)])
    steps.train(settings)
    assert steps.promote(settings).promoted
    return settings, loans


def require(available: bool, what: str, how: str) -> None:
    """Skip with a reason when an outside program is missing; in CI, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing (CI must run these tests)")
    pytest.skip(f"{what} is missing; {how}")


def _postgres_admin() -> sa.Engine | None:
    engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            return engine
    except sa.exc.OperationalError:
        engine.dispose()
        return None


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    engine = _postgres_admin()
    if engine is None:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}"
        if IN_CI:
            pytest.fail(message + " (CI must run the PostgreSQL tests)")
        pytest.skip(message + "; set LOANRISK_TEST_POSTGRES_URL to run these tests")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: sa.Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"loanrisk_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with postgres_admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_settings(request: pytest.FixtureRequest, home: Path) -> Settings:
    """Settings for a fresh warehouse on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return get_settings(home=home)
    url = request.getfixturevalue("postgres_url")
    return get_settings(home=home, warehouse={"url": url})
