"""The per-leaf TreeSHAP tables give LightGBM's own pred_contrib, on every kind of split."""

import os
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from loanrisk.modeling import treeshap
from loanrisk.modeling.features import encoded
from loanrisk.modeling.treeshap import TreeShap, Unsupported

pytestmark = pytest.mark.unit


def data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric inputs with NaNs and exact zeros, a categorical input with many levels."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": np.where(rng.random(rows) < 0.2, np.nan, rng.exponential(size=rows)),
            "c": np.where(rng.random(rows) < 0.3, 0.0, rng.normal(size=rows)),
            "d": rng.integers(0, 5, rows).astype(float),
            "e": pd.Categorical(rng.choice(list("pqrstuvwxyz"), rows)),
        }
    )
    signal = (
        x["a"]
        + np.nan_to_num(x["b"].to_numpy(), nan=2.0)
        - 2 * (x["c"] == 0)
        + x["d"] * 0.3
        + x["e"].isin(list("pqrs")) * 1.5
    )
    y = (signal + rng.normal(size=rows) > 1.5).astype(int).to_numpy()
    return x, y


def edge_rows(x: pd.DataFrame, model: lgb.LGBMClassifier) -> np.ndarray:
    """Rows that sit on every threshold, at ±0 and within 1e-35 of zero, NaN, ±inf, and
    categorical codes that are missing, unseen or negative."""
    matrix = encoded(x.head(1))
    rows = []
    dump = model.booster_.dump_model()
    thresholds: list[tuple[int, float]] = []

    def walk(node: dict) -> None:
        if "split_feature" in node:
            if node["decision_type"] == "<=":
                thresholds.append((node["split_feature"], float(node["threshold"])))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump["tree_info"]:
        walk(tree["tree_structure"])
    for feature, value in thresholds:
        for v in (value, np.nextafter(value, np.inf), np.nextafter(value, -np.inf)):
            row = matrix[0].copy()
            row[feature] = v
            rows.append(row)
    for v in (0.0, -0.0, 1e-36, -1e-36, 1e-34, np.nan, np.inf, -np.inf, 1e300):
        row = matrix[0].copy()
        row[:4] = v
        rows.append(row)
    for code in (np.nan, -1.0, -0.5, 0.0, 3.7, 10.0, 11.0, 40.0, 1e6):
        row = matrix[0].copy()
        row[4] = code
        rows.append(row)
    return np.asarray(rows)


def reference(model: lgb.LGBMClassifier, matrix: np.ndarray) -> np.ndarray:
    return model.booster_.predict(matrix, pred_contrib=True)[:, :-1]


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 15},
        {
            "num_leaves": 63,
            "min_child_samples": 5,
        },  # long paths that split on one input again and again
        {"num_leaves": 15, "zero_as_missing": True},  # missing type Zero
        {"num_leaves": 7, "use_missing": False},  # missing type None
        {"num_leaves": 31, "max_cat_to_onehot": 32},  # one-hot style categorical splits
    ],
)
def test_equal_to_lightgbm_pred_contrib(params: dict) -> None:
    x, y = data(6_000)
    model = lgb.LGBMClassifier(n_estimators=60, verbose=-1, **params).fit(x, y)
    shap = TreeShap(model.booster_, model.booster_.current_iteration())
    held_out, _ = data(3_000, seed=1)
    held_out["e"] = pd.Categorical(held_out["e"], categories=x["e"].cat.categories)
    for matrix in (encoded(held_out), edge_rows(x, model)):
        expected = reference(model, matrix)
        assert np.abs(shap(matrix) - expected).max() <= 1e-12
        assert np.abs(shap(matrix, threads=2) - expected).max() <= 1e-12
        # single rows (the service's path) give the same bits as the batch
        assert np.array_equal(
            np.vstack([shap(matrix[i : i + 1]) for i in range(20)]), shap(matrix[:20])
        )
    # the frame path: a model frame encoded as LightGBM encodes it
    assert (
        np.abs(shap(encoded(held_out)) - model.predict(held_out, pred_contrib=True)[:, :-1]).max()
        <= 1e-12
    )


def test_tables_and_per_row_recurrences_give_the_same_bits(monkeypatch) -> None:
    x, y = data(6_000)
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=31, verbose=-1).fit(x, y)
    matrix = encoded(x.head(2_000))
    tabled = TreeShap(model.booster_, 40)
    assert tabled.table_entries > 0
    monkeypatch.setattr(treeshap, "TABLE_DEPTH", 0)
    direct = TreeShap(model.booster_, 40)
    assert direct.table_entries == 0
    assert np.array_equal(tabled(matrix), direct(matrix))


def test_only_the_first_iterations_count() -> None:
    x, y = data(4_000)
    model = lgb.LGBMClassifier(n_estimators=50, verbose=-1).fit(x, y)
    matrix = encoded(x.head(500))
    expected = model.booster_.predict(matrix, pred_contrib=True, num_iteration=20)[:, :-1]
    assert np.abs(TreeShap(model.booster_, 20)(matrix) - expected).max() <= 1e-12


def test_models_it_does_not_cover_are_refused() -> None:
    x, y = data(3_000)
    three = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y + (x["a"] > 1))
    with pytest.raises(Unsupported, match="several classes"):
        TreeShap(three.booster_, 5)
    numeric = x.drop(columns="e")
    linear = lgb.LGBMClassifier(n_estimators=5, linear_tree=True, verbose=-1).fit(numeric, y)
    with pytest.raises(Unsupported, match="linear"):
        TreeShap(linear.booster_, 5)


def test_remembered_decisions_give_the_same_bits(monkeypatch) -> None:
    """A tree's values looked up from the decisions seen before equal computing them,
    whether the memo is empty, warm, full (slots or values) or absent."""
    x, y = data(6_000)
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=31, verbose=-1).fit(x, y)
    matrix = np.vstack([encoded(x.head(3_000)), edge_rows(x, model)])
    monkeypatch.setattr(treeshap, "MEMOS", 0)
    computed = TreeShap(model.booster_, 40)(matrix)
    monkeypatch.undo()
    warm = TreeShap(model.booster_, 40)
    assert np.array_equal(warm(matrix), computed)  # misses, then hits within the call
    assert np.array_equal(warm(matrix, threads=2), computed)  # a second memo, and hits
    memo = warm._memos.get_nowait()
    assert memo[3][0] > 0 and memo[3][1:].max() > 1  # values were remembered
    assert np.abs(computed - reference(model, matrix)).max() <= 1e-12
    for slots, values in ((4 * 40, treeshap.MEMO_VALUES), (treeshap.MEMO_SLOTS, 50)):
        monkeypatch.setattr(treeshap, "MEMO_SLOTS", slots)
        monkeypatch.setattr(treeshap, "MEMO_VALUES", values)
        cramped = TreeShap(model.booster_, 40)
        assert np.array_equal(cramped(matrix), computed)
        assert np.array_equal(cramped(matrix), computed)
    # A store with room for a few patterns per tree is shared by every tree, not filled
    # by the first trees the kernel goes through.
    monkeypatch.setattr(treeshap, "MEMO_VALUES", 40 * 64)
    shared = TreeShap(model.booster_, 40)
    assert np.array_equal(shared(matrix), computed)
    remembered = shared._memos.get_nowait()[3][1:]
    assert remembered.min() > 0, remembered


def _kernels_in_a_fresh_process(env: dict[str, str]) -> str:
    """Import the kernels and explain one tree in a new interpreter with ``env``."""
    code = "from loanrisk.modeling.treeshap import compile_kernels; compile_kernels(); print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_kernels_load_without_a_writable_cache_and_from_a_seeded_one(tmp_path) -> None:
    """A read-only root (the Kubernetes manifests) must not make the import fail: numba
    refuses to cache without a folder it can write to, so the kernels compile in memory;
    a seed (the image's prebuilt cache) is copied into an empty writable NUMBA_CACHE_DIR."""
    (tmp_path / "file").write_text("")
    nowhere = {
        "NUMBA_CACHE_DIR": str(tmp_path / "file" / "cache"),  # not a folder it can make
        "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",  # and no other place
    }
    assert _kernels_in_a_fresh_process(nowhere).strip() == "ok"
    seed, cache = tmp_path / "seed", tmp_path / "cache"
    _kernels_in_a_fresh_process({"NUMBA_CACHE_DIR": str(seed)})
    built = sorted(p.relative_to(seed) for p in seed.rglob("*.nbi"))
    assert built  # the index of each cached kernel
    env = {"NUMBA_CACHE_DIR": str(cache), "LOANRISK_NUMBA_SEED": str(seed)}
    _kernels_in_a_fresh_process(env)
    assert sorted(p.relative_to(cache) for p in cache.rglob("*.nbi")) == built
