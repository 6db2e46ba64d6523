"""The one packaged model: raw application fields in; PD, class, decision, grade, reasons out.

``ScoringBundle`` holds everything from parsing to the decision: the profile (refine and
build are the data layer's own functions), the feature spec, the fitted estimator, the
calibrator, the threshold and the master scale. ``LoanDefaultModel`` is the MLflow pyfunc
wrapper around it, so batch scoring, the API and ``/invocations`` share one artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from loanrisk.constants import LOAN_ID, SOURCE_ROW
from loanrisk.data.build import build_features
from loanrisk.data.refine import refine
from loanrisk.modeling.decision import Decisions, ReasonCodes, decide
from loanrisk.modeling.estimators import Candidate
from loanrisk.modeling.evaluate import Calibrator
from loanrisk.modeling.fastpath import FastScorer
from loanrisk.modeling.features import FeatureSpec, model_frame
from loanrisk.profiles.model import Profile, normalise_header

OUTPUT_COLUMNS = ["loan_id", "pd", "default_class", "decision", "grade", "reasons", "error"]


@dataclass
class ScoringBundle:
    """Everything needed to turn raw applications into decisions."""

    profile: Profile
    spec: FeatureSpec
    candidate: Candidate
    calibrator: Calibrator
    threshold: float
    grade_edges: list[float]
    # A sample of training model inputs with their PDs: monitoring's reference.
    reference: pd.DataFrame | None = None

    def reads(self, header: str) -> bool:
        """Whether the model reads the raw field ``header`` (a profile column scoring reads,
        ``Profile.reads``, by name or alias, spelled as files may spell it)."""
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            lookup = self.__dict__["_lookup"] = self.profile.header_lookup(applications=True)
        return normalise_header(str(header)) in lookup

    def fast(self) -> FastScorer:
        """The compiled dict -> vector path (built once per loaded model)."""
        scorer = self.__dict__.get("_fast")
        if scorer is None:
            scorer = self.__dict__["_fast"] = FastScorer(self)
        return scorer

    def __getstate__(self) -> dict[str, Any]:
        cached = ("_fast", "_lookup", "_reasons")
        return {k: v for k, v in self.__dict__.items() if k not in cached}

    def score_features(self, gold: pd.DataFrame) -> np.ndarray:
        """Calibrated PDs for gold-shaped rows (features already built)."""
        return self.calibrator(self.candidate.predict_raw(model_frame(gold, self.spec)))

    def reason_codes(self) -> ReasonCodes:
        """The profile's reason policy over this model's inputs (built once)."""
        codes = self.__dict__.get("_reasons")
        if codes is None:
            codes = self.__dict__["_reasons"] = ReasonCodes.of(self.profile, self.spec.columns)
        return codes

    def decide(self, pd_: np.ndarray, contributions: np.ndarray, missing: np.ndarray) -> Decisions:
        """Class, decision, grade and reasons of calibrated PDs (the one definition)."""
        return decide(
            pd_,
            contributions,
            missing,
            threshold=self.threshold,
            grade_edges=self.grade_edges,
            reasons=self.reason_codes(),
        )

    def predict(self, raw: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row, in order; invalid rows get ``error`` and no PD."""
        return self.predict_with_features(raw)[0]

    def predict_with_features(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``predict`` plus the model inputs of the valid rows (indexed like the output)."""
        out, features, decided = self.scored(raw)
        if decided is not None:
            rows = features.index.to_numpy()
            out.loc[rows, "reasons"] = pd.Series(decided.reasons, index=rows, dtype=object)
        return out, features

    def scored(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, Decisions | None]:
        """``predict``'s answer without its reasons column, the model inputs of the valid
        rows (indexed by their row in ``raw``), and their decisions (reasons in both forms)."""
        raw = raw.reset_index(drop=True)
        refined = refine(raw, self.profile, applications=True)
        out = pd.DataFrame(index=raw.index, columns=OUTPUT_COLUMNS, dtype=object)
        out["error"] = None
        if len(refined.rejects):
            rows = refined.rejects[SOURCE_ROW].to_numpy()
            out.loc[rows, "error"] = refined.rejects["reason"].to_numpy()
            out.loc[rows, "loan_id"] = refined.rejects[LOAN_ID].to_numpy()
        silver = refined.silver
        features = pd.DataFrame(columns=self.spec.columns)
        decided = None
        if len(silver):
            gold = build_features(silver, self.profile)
            features = model_frame(gold, self.spec)
            pd_ = self.calibrator(self.candidate.predict_raw(features))
            decided = self.decide(
                pd_, self.candidate.contributions(features), features.isna().to_numpy()
            )
            rows = silver[SOURCE_ROW].to_numpy()
            features.index = rows
            out.loc[rows, "loan_id"] = silver[LOAN_ID].to_numpy()
            out.loc[rows, "pd"] = pd_
            out.loc[rows, "default_class"] = decided.default_class
            out.loc[rows, "decision"] = decided.decision
            out.loc[rows, "grade"] = decided.grade
        out["pd"] = out["pd"].astype("float64")
        return out, features, decided


class LoanDefaultModel(PythonModel):
    """MLflow pyfunc wrapper: ``predict`` takes a frame of raw application fields; the
    ``output`` parameter picks the answer's form (``frame``; batch scoring's ``table``;
    ``spark``, the table as the Spark engine's ``spark_udf`` takes it)."""

    def load_context(self, context: Any) -> None:
        import joblib

        self.bundle: ScoringBundle = joblib.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        output = (params or {}).get("output", "frame")
        if output in ("table", "spark"):  # batch scoring's form
            from loanrisk.modeling.answers import score_table, spark_columns

            table = score_table(self.bundle, model_input)
            return spark_columns(table) if output == "spark" else table.to_pandas()
        if output != "frame":
            raise ValueError(f"params.output: {output!r} is not 'frame', 'table' or 'spark'")
        return self.bundle.predict(model_input)
