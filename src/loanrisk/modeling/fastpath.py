"""The packaged model's fast path: one application as a dict -> feature vector -> booster.

No pandas per request. It is compiled from a fitted ``ScoringBundle`` and gives the same
PDs as the frame path (``ScoringBundle.predict``): a test checks thousands of generated
and real rows to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from loanrisk.data.scalar import derive, refine_record
from loanrisk.modeling.estimators import (
    MISSING_LEVEL,
    LightGBMCandidate,
    LogisticCandidate,
    XGBoostCandidate,
)
from loanrisk.modeling.evaluate import GRADES

_UNSEEN = "\x00unseen"


class FastScorer:
    """Scores application dicts with the bundle's estimator, calibrator, threshold and scale."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.profile = bundle.profile
        self.spec = bundle.spec
        self.lookup = self.profile.header_lookup()
        self.level_codes = {
            name: {level: float(i) for i, level in enumerate(levels)}
            for name, levels in self.spec.levels.items()
        }
        self.names = [self.profile.describe(c) for c in self.spec.columns]
        model = bundle.candidate
        self._linear = _CompiledLogistic(model) if isinstance(model, LogisticCandidate) else None
        self.model = model
        self._lgb_predictor: Any = None

    # ------------------------------------------------------------------ features
    def features(self, typed: Mapping[str, Any]) -> list[Any]:
        """Model inputs in ``spec.columns`` order: floats, or level strings for categoricals."""
        values: list[Any] = []
        derived = self.profile.derived
        for name in self.spec.numeric:
            if name in derived:
                values.append(derive(typed, derived[name]))
            else:
                value = typed.get(name)
                values.append(math.nan if value is None else float(value))
        for name in self.spec.categorical:
            value = typed.get(name)
            values.append(None if value is None else str(value))
        return values

    def _matrix(self, rows: Sequence[list[Any]]) -> np.ndarray:
        n_numeric = len(self.spec.numeric)
        matrix = np.empty((len(rows), len(self.spec.columns)), dtype=np.float64)
        for i, row in enumerate(rows):
            matrix[i, :n_numeric] = row[:n_numeric]
            for j, name in enumerate(self.spec.categorical):
                level = row[n_numeric + j]
                matrix[i, n_numeric + j] = (
                    self.level_codes[name].get(level, math.nan) if level is not None else math.nan
                )
        return matrix

    # ------------------------------------------------------------------ model
    def _raw_and_contributions(self, rows: Sequence[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
        model = self.model
        if self._linear is not None:
            return self._linear.score(rows, self.spec)
        matrix = self._matrix(rows)
        if isinstance(model, LightGBMCandidate):
            # The probability comes from the same C call as the frame path's predict_proba
            # (bit-identical); deriving it from the contributions' sum differs in the last
            # bits, which can move a PD that sits exactly on a grade cut-point.
            predictor, iterations = self._lightgbm(), model._iterations()
            raw = predictor.predict(matrix, num_iteration=iterations)
            contributions = np.asarray(
                predictor.predict(matrix, num_iteration=iterations, pred_contrib=True)
            )[:, :-1]
            return np.asarray(raw), contributions
        if isinstance(model, XGBoostCandidate):
            booster = model.model.get_booster()
            dmatrix = xgb.DMatrix(
                matrix,
                feature_names=booster.feature_names,
                feature_types=booster.feature_types,
                enable_categorical=True,
                nthread=1,
            )
            iteration_range = model._range()
            raw = booster.predict(dmatrix, iteration_range=iteration_range)
            contributions = np.asarray(
                booster.predict(dmatrix, pred_contribs=True, iteration_range=iteration_range)
            )[:, :-1]
            return np.asarray(raw), contributions
        raise TypeError(f"no fast path for {type(model).__name__}")

    def _lightgbm(self) -> Any:
        """LightGBM's predictor for this booster, single-threaded, built once.

        ``Booster.predict`` rebuilds it on every call (parameter parsing, a C handle), which
        costs as much as the prediction itself for one row.
        """
        if self._lgb_predictor is None:
            from lightgbm.basic import _InnerPredictor

            self._lgb_predictor = _InnerPredictor.from_booster(
                booster=self.model.model.booster_, pred_parameter={"num_threads": 1}
            )
        return self._lgb_predictor

    # ------------------------------------------------------------------ public
    def score(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One result per record: loan_id, pd, default_class, decision, grade, reasons, error."""
        results: list[dict[str, Any]] = [{} for _ in records]
        valid_rows: list[list[Any]] = []
        valid_index: list[int] = []
        id_column = self.profile.id.column
        for i, record in enumerate(records):
            typed, problems = refine_record(record, self.profile, self.lookup)
            loan_id = typed.get(id_column) if id_column else None
            results[i] = {
                "loan_id": None if loan_id is None else str(loan_id),
                "pd": None,
                "default_class": None,
                "decision": None,
                "grade": None,
                "reasons": None,
                "error": None,
                "problems": problems,
                "features": None,
            }
            if problems:
                results[i]["error"] = "; ".join(f"{k}: {v}" for k, v in problems.items())
                continue
            row = self.features(typed)
            results[i]["features"] = dict(zip(self.spec.columns, row, strict=True))
            valid_rows.append(row)
            valid_index.append(i)
        if valid_rows:
            raw, contributions = self._raw_and_contributions(valid_rows)
            pd_ = self.bundle.calibrator(raw)
            edges = np.asarray(self.bundle.grade_edges)
            top = self.bundle.top_reasons
            for k, i in enumerate(valid_index):
                value = float(pd_[k])
                order = np.argsort(-contributions[k])[:top]
                declined = value >= self.bundle.threshold
                results[i].update(
                    pd=value,
                    default_class=int(declined),
                    decision="decline" if declined else "approve",
                    grade=GRADES[int(np.searchsorted(edges, value, side="right"))],
                    reasons=[self.names[j] for j in order if contributions[k, j] > 0],
                )
        return results


class _CompiledLogistic:
    """The LR pipeline as arithmetic: log of skewed columns, impute, scale, one-hot, dot."""

    def __init__(self, candidate: LogisticCandidate) -> None:
        pipeline = candidate.pipeline
        prepare = pipeline.named_steps["prepare"]
        numeric = prepare.named_transformers_["num"]
        imputer = numeric.named_steps["impute"]
        scaler = numeric.named_steps["scale"]
        spec = candidate.spec
        self.skewed = [spec.numeric.index(c) for c in candidate.skewed]
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
        self.categorical = spec.categorical
        # One-hot columns of each level, found by asking the fitted encoder itself (the
        # other categorical inputs get an unseen level, which encodes as all zeros).
        self.onehot: list[dict[str, np.ndarray]] = []
        offset = self.n_numeric + len(self.indicator_columns)
        if "cat" in prepare.named_transformers_:
            encoder = prepare.named_transformers_["cat"]
            for j, name in enumerate(spec.categorical):
                mapping = {}
                for level in [*spec.levels[name], MISSING_LEVEL, _UNSEEN]:
                    sample = pd.DataFrame([dict.fromkeys(spec.categorical, _UNSEEN)])
                    sample.iloc[0, j] = level
                    encoded = encoder.transform(sample)
                    dense = encoded.toarray() if hasattr(encoded, "toarray") else encoded
                    mapping[level] = offset + np.flatnonzero(np.asarray(dense)[0])
                self.onehot.append(mapping)

    def transformed(self, row: list[Any]) -> np.ndarray:
        width = self.coef.shape[0]
        out = np.zeros(width, dtype=np.float64)
        numeric = np.asarray(row[: self.n_numeric], dtype=np.float64)
        for i in self.skewed:
            if not math.isnan(numeric[i]):
                numeric[i] = math.log1p(max(numeric[i], 0.0))
        missing = np.isnan(numeric)
        filled = np.where(missing, self.medians, numeric)
        out[: self.n_numeric] = filled
        for k, column in enumerate(self.indicator_columns):
            out[self.n_numeric + k] = float(missing[column])
        block = self.n_numeric + len(self.indicator_columns)
        out[:block] = (out[:block] - self.mean) / self.scale
        for j, mapping in enumerate(self.onehot):
            # As in model_frame: a level not seen in training counts as missing.
            columns = mapping.get(row[self.n_numeric + j], mapping[MISSING_LEVEL])
            out[columns] = 1.0
        return out

    def score(self, rows: Sequence[list[Any]], spec: Any) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.vstack([self.transformed(row) for row in rows])
        logits = matrix @ self.coef + self.intercept
        raw = 1.0 / (1.0 + np.exp(-logits))
        contributions = matrix @ self.weights - self.reference
        return raw, contributions
