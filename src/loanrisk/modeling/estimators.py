"""The three candidates: logistic regression, XGBoost and LightGBM, behind one interface.

Each candidate fits on training rows, early-stops and is tuned on validation rows only,
scores raw (uncalibrated) probabilities, and explains a score as per-feature
contributions in log-odds (native tree contributions; coefficient x deviation for LR).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
import sqlalchemy as sa
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from loanrisk.errors import LoanriskError
from loanrisk.modeling.features import FeatureSpec, encoded

if TYPE_CHECKING:
    from loanrisk.modeling.treeshap import TreeShap

log = logging.getLogger(__name__)
MISSING_LEVEL = "(missing)"


class Candidate:
    """Base class: a model family with default parameters and a search space."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]

    def __init__(self, spec: FeatureSpec, params: dict[str, Any], *, seed: int = 42) -> None:
        self.spec = spec
        self.params = {**self.defaults, **params}
        self.seed = seed

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        raise NotImplementedError

    def fit(
        self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> None:
        raise NotImplementedError

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probability of default."""
        raise NotImplementedError

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        """Per-feature log-odds contributions, columns in ``spec.columns`` order."""
        raise NotImplementedError

    def importance(self) -> dict[str, float]:
        raise NotImplementedError

    def for_serving(self) -> None:
        """Prepare for single-row predictions in a server process."""

    def score_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uncalibrated PDs, per-feature contributions) of encoded rows, single-threaded:
        the service's per-request path, equal to ``predict_raw`` and ``contributions``.

        ``matrix`` holds ``spec.columns`` in order: numeric values, then each categorical
        input as the index of its level in ``spec.levels`` (NaN: missing or unseen).
        """
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}


def _balance(y: np.ndarray) -> float:
    positives = float(np.sum(y))
    return (len(y) - positives) / max(positives, 1.0)


class LogisticCandidate(Candidate):
    name = "logistic_regression"
    defaults: ClassVar[dict[str, Any]] = {"C": 0.1}

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}

    def fit(
        self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> None:
        skewed = [c for c in self.spec.numeric if _is_skewed(x_train[c].to_numpy("float64"))]
        self.skewed = skewed
        numeric = Pipeline(
            [
                (
                    "log",
                    FunctionTransformer(
                        _log_skewed, kw_args={"columns": skewed}, feature_names_out="one-to-one"
                    ),
                ),
                ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                ("scale", StandardScaler()),
            ]
        )
        transformers: list[tuple[str, Any, list[str]]] = [("num", numeric, self.spec.numeric)]
        if self.spec.categorical:
            transformers.append(
                (
                    "cat",
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                    self.spec.categorical,
                )
            )
        self.pipeline = Pipeline(
            [
                ("prepare", ColumnTransformer(transformers, sparse_threshold=1.0)),
                (
                    "model",
                    LogisticRegression(C=self.params["C"], class_weight="balanced", max_iter=2000),
                ),
            ]
        )
        # LR cannot be constrained while it fits: an input whose coefficient takes the
        # sign against the profile's direction of risk is neutralised (held at zero, so
        # it neither moves the PD nor becomes a reason) and the model refitted, as
        # scorecard builders drop a wrong-signed characteristic.
        self.neutral: list[str] = []
        for _ in range(4):
            self.pipeline.fit(self._input(x_train), y_train)
            self._build_contribution_map()
            if not self.violations:
                break
            self.neutral += self.violations

    def _input(self, x: pd.DataFrame) -> pd.DataFrame:
        frame = x[self.spec.numeric].copy()
        for column in getattr(self, "neutral", []):
            frame[column] = 0.0
        for column in self.spec.categorical:
            frame[column] = x[column].astype(object).where(x[column].notna(), MISSING_LEVEL)
        return frame

    def _build_contribution_map(self) -> None:
        prepare: ColumnTransformer = self.pipeline.named_steps["prepare"]
        names = list(prepare.get_feature_names_out())
        columns = self.spec.columns
        mapping = np.zeros((len(names), len(columns)))
        for i, name in enumerate(names):
            block, _, rest = name.partition("__")
            rest = rest.removeprefix("missingindicator_")
            if block == "num":
                mapping[i, columns.index(rest)] = 1.0
            else:
                owner = max((c for c in self.spec.categorical if rest.startswith(c + "_")), key=len)
                mapping[i, columns.index(owner)] = 1.0
        coef = self.pipeline.named_steps["model"].coef_[0]
        # LR cannot be constrained while fitting: check each declared direction's sign.
        directions = getattr(self.spec, "monotone", None) or {}
        self.violations = [
            c
            for c, d in directions.items()
            if f"num__{c}" in names and coef[names.index(f"num__{c}")] * d < 0
        ]
        self._weights = coef[:, None] * mapping  # transformed column -> feature
        self._coef = coef
        self._mapping = mapping
        self._mean = None

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(self._input(x))[:, 1])

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        transformed = self.pipeline.named_steps["prepare"].transform(self._input(x))
        if self._mean is None:
            raise LoanriskError(
                "logistic contributions need the training means; call set_reference() after fitting"
            )
        centred = (
            transformed @ self._weights
            if sp.issparse(transformed)
            else np.asarray(transformed) @ self._weights
        )
        return np.asarray(centred) - self._mean

    def set_reference(self, x_train: pd.DataFrame) -> None:
        """Contributions are measured against the average training applicant."""
        transformed = self.pipeline.named_steps["prepare"].transform(self._input(x_train))
        mean = np.asarray(transformed.mean(axis=0)).ravel()
        self._mean = mean @ self._weights

    def importance(self) -> dict[str, float]:
        weights = np.abs(self._coef) @ self._mapping
        return dict(zip(self.spec.columns, weights.tolist(), strict=True))

    def score_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = self.__dict__["_compiled"] = _LogisticArithmetic(self)
        return compiled.score(matrix)


class _LogisticArithmetic:
    """The fitted LR pipeline as arithmetic on encoded rows: log of skewed columns, impute,
    scale, one-hot, dot (no pandas or scikit-learn per request)."""

    def __init__(self, candidate: LogisticCandidate) -> None:
        pipeline = candidate.pipeline
        prepare = pipeline.named_steps["prepare"]
        numeric = prepare.named_transformers_["num"]
        imputer = numeric.named_steps["impute"]
        scaler = numeric.named_steps["scale"]
        spec = candidate.spec
        self.skewed = [spec.numeric.index(c) for c in candidate.skewed]
        self.neutral = [spec.numeric.index(c) for c in getattr(candidate, "neutral", [])]
        self.medians = np.asarray(imputer.statistics_, dtype=np.float64)
        indicator = imputer.indicator_
        self.indicator_columns = list(indicator.features_) if indicator is not None else []
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = np.asarray(scaler.scale_, dtype=np.float64)
        self.n_numeric = len(spec.numeric)
        model = pipeline.named_steps["model"]
        self.coef = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept = float(model.intercept_[0])
        self.weights = candidate._weights
        self.reference = candidate._mean
        # Per categorical input: the one-hot columns of each level code, and of a missing
        # level (also used for levels not seen in training, as in model_frame), found by
        # asking the fitted encoder itself (other inputs get an unknown, all-zero level).
        self.onehot: list[tuple[list[np.ndarray], np.ndarray]] = []
        offset = self.n_numeric + len(self.indicator_columns)
        if "cat" in prepare.named_transformers_:
            encoder = prepare.named_transformers_["cat"]

            def columns_of(j: int, level: str) -> np.ndarray:
                sample = pd.DataFrame([dict.fromkeys(spec.categorical, "\x00unseen")])
                sample.iloc[0, j] = level
                encoded = encoder.transform(sample)
                dense = encoded.toarray() if hasattr(encoded, "toarray") else encoded
                return offset + np.flatnonzero(np.asarray(dense)[0])

            for j, name in enumerate(spec.categorical):
                levels = [columns_of(j, level) for level in spec.levels[name]]
                self.onehot.append((levels, columns_of(j, MISSING_LEVEL)))

    def score(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, n = matrix.shape[0], self.n_numeric
        numeric = matrix[:, :n].copy()
        numeric[:, self.neutral] = 0.0
        for i in self.skewed:
            column = numeric[:, i]
            present = ~np.isnan(column)
            column[present] = np.log1p(np.maximum(column[present], 0.0))
        missing = np.isnan(numeric)
        out = np.zeros((rows, self.coef.shape[0]), dtype=np.float64)
        out[:, :n] = np.where(missing, self.medians, numeric)
        for k, column in enumerate(self.indicator_columns):
            out[:, n + k] = missing[:, column]
        block = n + len(self.indicator_columns)
        out[:, :block] = (out[:, :block] - self.mean) / self.scale
        for j, (levels, absent) in enumerate(self.onehot):
            for r, code in enumerate(matrix[:, n + j]):
                out[r, absent if np.isnan(code) else levels[int(code)]] = 1.0
        logits = out @ self.coef + self.intercept
        raw = 1.0 / (1.0 + np.exp(-logits))
        return raw, out @ self.weights - self.reference


def _is_skewed(values: np.ndarray) -> bool:
    """Non-negative with a long right tail (income, balances): log1p helps a linear model."""
    from scipy.stats import skew

    finite = values[~np.isnan(values)]
    return bool(len(finite) > 2 and finite.min() >= 0 and skew(finite) > 2.0)


def _log_skewed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        out[column] = np.log1p(out[column].clip(lower=0))
    return out


class XGBoostCandidate(Candidate):
    name = "xgboost"
    defaults: ClassVar[dict[str, Any]] = {
        "max_depth": 4,
        "learning_rate": 0.05,
        "min_child_weight": 5.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    }

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 50.0, log=True),
        }

    def fit(
        self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> None:
        self.model = xgb.XGBClassifier(
            n_estimators=2000,
            tree_method="hist",
            enable_categorical=True,
            max_cat_to_onehot=8,
            eval_metric="auc",
            early_stopping_rounds=100,
            scale_pos_weight=_balance(y_train),
            random_state=self.seed,
            n_jobs=2,
            monotone_constraints=tuple(self.spec.constraints()),
            **self.params,
        )
        self.model.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)

    def _range(self) -> tuple[int, int]:
        return 0, int(self.model.best_iteration) + 1

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(x, iteration_range=self._range())[:, 1])

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        matrix = xgb.DMatrix(x, enable_categorical=True)
        values = self.model.get_booster().predict(
            matrix, pred_contribs=True, iteration_range=self._range()
        )
        return np.asarray(values)[:, :-1]

    def importance(self) -> dict[str, float]:
        gain = self.model.get_booster().get_score(importance_type="total_gain")
        return {c: float(np.sum(gain.get(c, 0.0))) for c in self.spec.columns}

    def for_serving(self) -> None:
        self.model.set_params(n_jobs=1)

    def score_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        booster = self.model.get_booster()
        dmatrix = xgb.DMatrix(
            matrix,
            feature_names=booster.feature_names,
            feature_types=booster.feature_types,
            enable_categorical=True,
            nthread=1,
        )
        raw = booster.predict(dmatrix, iteration_range=self._range())
        contributions = booster.predict(dmatrix, pred_contribs=True, iteration_range=self._range())
        return np.asarray(raw), np.asarray(contributions)[:, :-1]


class LightGBMCandidate(Candidate):
    name = "lightgbm"
    defaults: ClassVar[dict[str, Any]] = {
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_child_samples": 200,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    }

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 1000, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 50.0, log=True),
        }

    def fit(
        self, x_train: pd.DataFrame, y_train: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray
    ) -> None:
        self.model = lgb.LGBMClassifier(
            n_estimators=2000,
            subsample_freq=1,
            scale_pos_weight=_balance(y_train),
            random_state=self.seed,
            n_jobs=2,
            verbose=-1,
            cat_smooth=20,
            metric="auc",  # early stopping on AUC only: weighted log loss rises as trees grow
            monotone_constraints=self.spec.constraints(),
            **self.params,
        )
        self.model.fit(
            x_train,
            y_train,
            eval_X=(x_valid,),
            eval_y=(y_valid,),
            eval_metric="auc",
            callbacks=[lgb.early_stopping(100, first_metric_only=True, verbose=False)],
        )
        self.num_threads = 2

    def _iterations(self) -> int:
        return int(self.model.best_iteration_ or self.model.n_estimators)

    def predict_raw(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.model.predict_proba(  # type: ignore[call-overload]
                x, num_iteration=self._iterations(), num_threads=self.num_threads
            )[:, 1]
        )

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        return self._explain(encoded(x), self.num_threads)

    def _explain(self, matrix: np.ndarray, threads: int) -> np.ndarray:
        """Per-feature log-odds contributions of encoded rows: the TreeSHAP tables, or
        LightGBM's pred_contrib for a model they do not cover."""
        shap = self._tree_shap()
        if shap is not None:
            return shap(matrix, threads)
        values = self.model.booster_.predict(
            matrix, pred_contrib=True, num_iteration=self._iterations(), num_threads=threads
        )
        return np.asarray(values)[:, :-1]

    def _tree_shap(self) -> TreeShap | None:
        """The per-leaf TreeSHAP tables of this model (built once per loaded model), or
        None for a model they do not cover (LightGBM's own pred_contrib is used then)."""
        if "_compiled" not in self.__dict__:
            from loanrisk.modeling.treeshap import TreeShap, Unsupported  # numba: when used

            try:
                self.__dict__["_compiled"] = TreeShap(self.model.booster_, self._iterations())
            except Unsupported as exc:
                log.info("contributions from LightGBM's pred_contrib: %s", exc)
                self.__dict__["_compiled"] = None
        return self.__dict__["_compiled"]

    def importance(self) -> dict[str, float]:
        gain = self.model.booster_.feature_importance(importance_type="gain")
        return dict(zip(self.model.booster_.feature_name(), map(float, gain), strict=True))

    def for_serving(self) -> None:
        # Multi-threaded single-row predicts cost milliseconds each in a server process.
        self.num_threads = 1
        shap = self._tree_shap()  # built (and its kernel compiled) before the first request
        if shap is not None:
            shap(np.full((1, len(self.spec.columns)), np.nan))

    def score_matrix(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The probability comes from the same C call as predict_proba (bit-identical);
        # deriving it from the contributions' sum differs in the last bits, which can move
        # a PD that sits exactly on a grade cut-point.
        booster, iterations = self.model.booster_, self._iterations()
        raw = booster.predict(matrix, num_iteration=iterations, num_threads=1)
        return np.asarray(raw), self._explain(matrix, 1)


CANDIDATES: dict[str, type[Candidate]] = {
    cls.name: cls for cls in (LogisticCandidate, XGBoostCandidate, LightGBMCandidate)
}


@dataclass
class FitResult:
    candidate: Candidate
    params: dict[str, Any]
    valid_auc: float
    trials: int


@dataclass(frozen=True)
class SharedStudy:
    """A tuning study kept in a database, shared by every ``loanrisk train`` process that
    trains on the same data with the same settings (the name says which)."""

    storage: str  # an SQLAlchemy URL
    name: str  # one family's study: "<prefix>-<family>"
    wait_seconds: float = 3600.0  # for other processes' running trials

    def open(self, seed: int) -> optuna.Study:
        """The study, created by whichever process comes first. Each process samples with
        a seed of its own (the same seed would propose the same parameters)."""
        sampler = optuna.samplers.TPESampler(seed=seed + os.getpid())
        # Two processes creating optuna's tables at once: the second sees them half made
        # (an integrity error, or a schema "no longer compatible" until the version row is
        # written) and tries again.
        for attempt in range(5):
            try:
                return optuna.create_study(
                    study_name=self.name,
                    storage=self._storage(),
                    direction="maximize",
                    sampler=sampler,
                    load_if_exists=True,
                )
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, RuntimeError):
                if attempt == 4:
                    raise
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    def _storage(self) -> optuna.storages.RDBStorage:
        """Optuna's tables; on PostgreSQL in a schema of their own, ``optuna`` (optuna
        keeps its schema version in ``alembic_version``, as the warehouse does)."""
        url = sa.engine.make_url(self.storage)
        if url.get_backend_name() != "postgresql":
            return optuna.storages.RDBStorage(self.storage)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {STUDY_SCHEMA}"))
        finally:
            engine.dispose()
        return optuna.storages.RDBStorage(
            self.storage,
            engine_kwargs={"connect_args": {"options": f"-csearch_path={STUDY_SCHEMA}"}},
        )

    def settled(self, study: optuna.Study) -> optuna.trial.FrozenTrial:
        """The best trial once no trial of any process is still running."""
        deadline = time.monotonic() + self.wait_seconds
        running = (optuna.trial.TrialState.RUNNING,)
        while study.get_trials(deepcopy=False, states=running):
            if time.monotonic() > deadline:
                raise LoanriskError(
                    f"study {self.name}: trials of other processes still running after "
                    f"{self.wait_seconds:.0f} s"
                )
            time.sleep(1.0)
        return study.best_trial


WORKER = f"{socket.gethostname()}:{os.getpid()}"
STUDY_SCHEMA = "optuna"


class _Search:
    """One family's fits on the training rows, scored on validation AUC; remembers the
    best this process fitted."""

    def __init__(
        self,
        name: str,
        spec: FeatureSpec,
        train: tuple[pd.DataFrame, np.ndarray],
        valid: tuple[pd.DataFrame, np.ndarray],
        seed: int,
        trials: int,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if name not in CANDIDATES:
            raise LoanriskError(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")
        self.name, self.family = name, CANDIDATES[name]
        self.spec, self.train, self.valid, self.seed = spec, train, valid, seed
        self.best: tuple[Candidate, float] | None = None
        self.trials, self.progress = trials, progress

    def build(self, params: dict[str, Any]) -> tuple[Candidate, float]:
        candidate = self.family(self.spec, params, seed=self.seed)
        candidate.fit(*self.train, *self.valid)
        auc = float(roc_auc_score(self.valid[1], candidate.predict_raw(self.valid[0])))
        return candidate, auc

    def objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        started = time.perf_counter()
        candidate, auc = self.build(self.family.suggest(trial))
        if self.best is None or auc > self.best[1]:
            self.best = (candidate, auc)
        if self.progress is not None:
            self.progress(
                f"{self.name}: trial {trial.number + 1}/{self.trials}, validation AUC "
                f"{auc:.4f} (best here {self.best[1]:.4f}), {time.perf_counter() - started:.1f} s"
            )
        return auc

    def shared(self, study: SharedStudy) -> optuna.Study:
        """Run trials in the shared study until it holds ``trials`` (every process's)."""
        shared = study.open(self.seed)
        if not shared.get_trials(deepcopy=False):
            shared.enqueue_trial(dict(self.family.defaults))
        enough = optuna.study.MaxTrialsCallback(self.trials, states=None)
        shared.optimize(self.objective, n_trials=self.trials, callbacks=[enough])
        return shared


def fit_candidate(
    name: str,
    spec: FeatureSpec,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    *,
    trials: int,
    seed: int,
    study: SharedStudy | None = None,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit one family; with ``trials`` > 1, tune with Optuna on validation AUC.

    The first trial is always the default parameters, so tuning never does worse on
    validation than no tuning. With a shared ``study``, this process runs trials until
    the study holds ``trials`` (counting every process's), waits for the others' to end,
    and fits the study's best parameters (refitted here when another process found them),
    so the choice is the one a single process would make from the same trials.
    """
    search = _Search(name, spec, train, valid, seed, trials, progress)
    if trials <= 1:
        candidate, auc = search.build({})
        return FitResult(candidate, candidate.params, auc, 1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study is None:
        local = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        local.enqueue_trial(dict(search.family.defaults))
        local.optimize(search.objective, n_trials=trials)
        assert search.best is not None
        candidate, auc = search.best
        return FitResult(candidate, candidate.params, auc, trials)
    shared = search.shared(study)
    winner = study.settled(shared)
    if search.best is not None and winner.value is not None and search.best[1] >= winner.value:
        candidate, auc = search.best
    else:  # another process's trial won: fit its parameters here
        fixed = optuna.trial.FixedTrial(winner.params)
        candidate, auc = search.build(search.family.suggest(fixed))
    return FitResult(candidate, candidate.params, auc, len(shared.get_trials(deepcopy=False)))


def tune_candidate(
    name: str,
    spec: FeatureSpec,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    *,
    trials: int,
    seed: int,
    study: SharedStudy,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A search-only worker: run trials in the shared study until it holds ``trials``;
    fit nothing else (the ``loanrisk train`` that registers fits the winner)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shared = _Search(name, spec, train, valid, seed, trials, progress).shared(study)
    finished = shared.get_trials(deepcopy=False)
    mine = [t for t in finished if t.user_attrs.get("worker") == WORKER]
    best = max((t.value for t in finished if t.value is not None), default=None)
    return {
        "study": study.name,
        "trials": len(finished),
        "this_worker": len(mine),
        "best_valid_auc": best,
    }
