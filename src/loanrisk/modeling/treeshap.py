"""Exact path-dependent TreeSHAP for LightGBM models, with per-leaf tables.

LightGBM's ``pred_contrib`` walks every tree once per row and pays O(L·D²) per tree
(L leaves, D depth). The same values can be had in O(L·D): for one leaf with path
value ``v``, unique path features ``U`` (``d = |U|``), cover ratios ``z_k`` (the product of
the training-count fractions over that feature's nodes on the path), a row enters the
leaf's share of feature ``i``'s contribution only through which features of ``U`` it
agrees with (the set ``A``: it goes the path's way at every node of that feature):

    phi_i = v · (p_i - z_i) · Σ_{S ⊆ A\\{i}} w(|S|, d) · Π_{k ∈ U\\S\\{i}} z_k,
    p_i = 1 if i ∈ A else 0,  w(s, d) = s!(d-1-s)!/d!

(the Shapley value of the leaf's game ``f(S) = v Π_{k∈S} p_k Π_{k∉S} z_k``, which is what
TreeSHAP computes: Lundberg et al., arXiv:1802.03888; the table form is "Fast TreeSHAP
v2", Yang 2021, arXiv:2109.09847). So each leaf gets a table of its ``d`` values for
each of the ``2^d`` agreement patterns, built once when the model is loaded (O(2^d·d)
per leaf through a subset recurrence); scoring a row is one decision per internal node
and, per leaf, its pattern and ``d`` additions. Leaves whose table would be too large
(``d`` > ``TABLE_DEPTH``, or past ``TABLE_BUDGET`` entries in all) are computed per row by
the same recurrences, so which leaves have tables never changes a value.

The decisions are LightGBM's own (``Tree::NumericalDecision`` / ``CategoricalDecision``:
missing types None/Zero/NaN, default direction, category bitsets, values within 1e-35 of
zero read as zero), parsed from the model's text form, whose thresholds are exact. The
values equal ``pred_contrib``'s to rounding (a test checks 1e-12 on generated and edge-case
rows); models this does not cover (linear trees, several classes) keep ``pred_contrib``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numba
import numpy as np

TABLE_DEPTH = 12  # unique features on a leaf's path up to which it gets a table
TABLE_BUDGET = 1 << 24  # table entries in all (128 MB of float64)
MEMO_SLOTS = 1 << 19  # remembered decision patterns per memo, over all trees (8 MB)
MEMO_VALUES = 1 << 21  # their values per memo (16 MB of float64)
MEMOS = 4  # memos per model (one per thread scoring at the same time)
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float)


log = logging.getLogger(__name__)


def _seed_cache() -> None:
    """Copy the kernels compiled into the image (``LOANRISK_NUMBA_SEED``, read-only) into a
    writable, empty ``NUMBA_CACHE_DIR`` (a Kubernetes emptyDir), so a pod does not compile
    them again; numba only uses a cache folder it can write to."""
    seed, target = os.environ.get("LOANRISK_NUMBA_SEED"), os.environ.get("NUMBA_CACHE_DIR")
    if not seed or not target or not os.path.isdir(seed):
        return
    try:
        if os.path.isdir(target) and os.listdir(target):
            return
        # Copied beside it, then renamed into place: workers starting together never read
        # a half-copied cache (the one that loses the rename drops its copy).
        copy = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".seed-")
        shutil.copytree(seed, copy, dirs_exist_ok=True)
        try:
            os.rename(copy, target)
        except OSError:
            shutil.rmtree(copy, ignore_errors=True)
    except OSError as exc:
        log.info("numba kernels not seeded from %s: %s", seed, exc)


def _kernel(function: Any) -> Any:
    """A numba kernel (releases the GIL), cached on disk where numba finds a folder it can
    write to; where it finds none (a read-only root without NUMBA_CACHE_DIR on a volume),
    compiled in memory at first use instead of failing at import."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        log.info("numba kernels compiled in memory: %s", exc)
        return numba.njit(nogil=True)(function)


_seed_cache()


class Unsupported(ValueError):
    """A model these tables do not cover; the caller keeps LightGBM's pred_contrib."""


# --------------------------------------------------------------------------- kernels
@_kernel
def _extend(e: Any, size: int, z: float) -> None:
    """Elementary symmetric polynomials ``e[0..size]`` of a set, extended by one ``z``."""
    e[size + 1] = z * e[size]
    for j in range(size, 0, -1):
        e[j] = e[j] + z * e[j - 1]


@_kernel
def _weighted(e: Any, size: int, w: Any) -> float:
    """G(A) = Σ_s w(s, d) · e_{|A|-s}(z_A), the permutation-weighted sum over S ⊆ A."""
    total = 0.0
    for s in range(size + 1):
        total += w[s] * e[size - s]
    return total


@_kernel
def _fill_table(z: Any, d: int, v: float, w: Any, out: Any) -> None:
    """``out[pattern * d + i]`` for every agreement pattern, via subsets (O(2^d · d))."""
    m = 1 << d
    e = np.zeros((m, d + 1))
    g = np.empty(m)
    q = np.empty(m)  # Π of z over the features NOT in the mask (descending order)
    e[0, 0] = 1.0
    g[0] = _weighted(e[0], 0, w)
    sizes = np.zeros(m, dtype=np.int64)
    for mask in range(1, m):
        high = _high_bit(mask)
        parent = mask ^ (1 << high)
        size = sizes[parent]
        e[mask, : size + 1] = e[parent, : size + 1]
        _extend(e[mask], size, z[high])
        sizes[mask] = size + 1
        g[mask] = _weighted(e[mask], size + 1, w)
    q[m - 1] = 1.0
    for mask in range(m - 2, -1, -1):
        low = _trailing_zeros(~mask)
        q[mask] = q[mask | (1 << low)] * z[low]
    for mask in range(m):
        for i in range(d):
            bit = 1 << i
            if mask & bit:
                out[mask * d + i] = v * (1.0 - z[i]) * (q[mask] * g[mask ^ bit])
            else:
                out[mask * d + i] = v * (0.0 - z[i]) * (q[mask | bit] * g[mask])


@_kernel
def _high_bit(x: int) -> int:
    high = 0
    while x >> (high + 1):
        high += 1
    return high


@_kernel
def _trailing_zeros(x: int) -> int:
    n = 0
    while not (x & 1):
        x >>= 1
        n += 1
    return n


@_kernel
def _leaf_direct(z: Any, d: int, v: float, w: Any, pattern: int, out: Any, e: Any) -> None:
    """One pattern's ``d`` values by the same recurrences as ``_fill_table`` (equal bits)."""
    for i in range(d):
        bit = 1 << i
        inside = (pattern & bit) != 0
        subset = pattern ^ bit if inside else pattern
        size = 0
        e[0] = 1.0
        for k in range(d):  # E(subset), bits added in increasing order
            if subset & (1 << k):
                _extend(e, size, z[k])
                size += 1
        g = _weighted(e, size, w)
        rest = pattern | bit
        q = 1.0
        for k in range(d - 1, -1, -1):  # Π of z outside ``rest``, descending
            if not rest & (1 << k):
                q = q * z[k]
        if inside:
            out[i] = v * (1.0 - z[i]) * (q * g)
        else:
            # q over the complement of (pattern | bit) equals _fill_table's q[mask | bit]
            out[i] = v * (0.0 - z[i]) * (q * g)


@_kernel
def _explain(x: Any, out: Any, t: Any, memo: Any) -> None:
    (node_start, feature, kind, threshold, cat_start, cat_len, cat_bits, leaf_start,
     leaf_value, leaf_d, slot_start, slot_feature, slot_z, entry_start, entry_node,
     entry_left, entry_slot, table_offset, tree_feature_start, tree_feature, table,
     weights) = t  # fmt: skip
    keys, found, store, used = memo
    trees = len(node_start) - 1
    slots = len(keys) // trees if trees else 0  # per tree; 0: no memo
    share = len(store) // trees if trees else 0  # stored values per tree
    widest = 0
    for tree in range(trees):
        widest = max(widest, node_start[tree + 1] - node_start[tree])
    left = np.empty(max(widest, 1), dtype=np.int64)  # 1: the row goes left there
    scratch = np.empty(65)
    values = np.empty(64)
    local = np.zeros(out.shape[1])  # one tree's contributions, by feature
    # Tree by tree over all the rows, so that one tree's nodes, tables and memo stay in
    # the cache while they are used (row by row over all the trees, the memo's random
    # reads over every tree missed the cache: 2.5x slower). Each row still adds its trees
    # in tree order, so the sums are the same bits.
    for tree in range(trees):
        first = node_start[tree]
        internal = node_start[tree + 1] - first
        f0, f1 = tree_feature_start[tree], tree_feature_start[tree + 1]
        for r in range(x.shape[0]):
            row = x[r]
            acc = out[r]
            key = 0
            for k in range(internal):
                node = first + k
                value = row[feature[node]]
                flags = kind[node]
                if flags & 1:  # categorical: NaN, negative or not in the bitset go right
                    go = 0
                    if not math.isnan(value):
                        code = int(value)
                        if code >= 0 and code // 32 < cat_len[node]:
                            go = (cat_bits[cat_start[node] + code // 32] >> (code % 32)) & 1
                    left[k] = go
                else:
                    missing = (flags >> 2) & 3
                    if math.isnan(value) and missing == 2:
                        left[k] = (flags >> 1) & 1
                    elif math.isnan(value) or math.fabs(value) <= _ZERO:
                        if missing == 1:
                            left[k] = (flags >> 1) & 1
                        else:
                            left[k] = threshold[node] >= 0.0
                    else:
                        left[k] = value <= threshold[node]
                key = (key << 1) | left[k]
            # The tree's values depend on the row only through its decisions: seen
            # decisions are looked up (same bits as computing them: the same sums).
            at = -1
            if slots and internal <= 62:
                h = ((key * -7046029254386353131) >> 20) & (slots - 1)
                while True:
                    place = tree * slots + h
                    if keys[place] == key:
                        base = found[place]
                        for j in range(f1 - f0):
                            acc[tree_feature[f0 + j]] += store[base + j]
                        at = -2
                        break
                    if keys[place] == -1:
                        at = place
                        break
                    h = (h + 1) & (slots - 1)
            if at == -2:
                continue
            for leaf in range(leaf_start[tree], leaf_start[tree + 1]):
                d = leaf_d[leaf]
                if d == 0:
                    continue
                pattern = (1 << d) - 1
                for entry in range(entry_start[leaf], entry_start[leaf + 1]):
                    # branch-free: clear the slot's bit where the row leaves the path
                    pattern &= ~((left[entry_node[entry]] ^ entry_left[entry]) << entry_slot[entry])
                s0 = slot_start[leaf]
                offset = table_offset[leaf]
                if offset >= 0:
                    base = offset + pattern * d
                    for j in range(d):
                        local[slot_feature[s0 + j]] += table[base + j]
                else:
                    _leaf_direct(slot_z[s0 : s0 + d], d, leaf_value[leaf], weights[d],
                                 pattern, values, scratch)  # fmt: skip
                    for j in range(d):
                        local[slot_feature[s0 + j]] += values[j]
            # Remember it while the tree's slots are under 3/4 full and the tree's share of
            # the store has room (a share each: going tree by tree, the first trees would
            # otherwise fill the store and the last ones would never be remembered; the
            # shares add up to at most the store).
            keep = (
                at >= 0
                and used[1 + tree] * 4 < slots * 3
                and (used[1 + tree] + 1) * (f1 - f0) <= share
            )
            if keep:
                keys[at] = key
                found[at] = used[0]
                used[1 + tree] += 1
            for j in range(f1 - f0):
                f = tree_feature[f0 + j]
                if keep:
                    store[used[0] + j] = local[f]
                acc[f] += local[f]
                local[f] = 0.0
            if keep:
                used[0] += f1 - f0


# --------------------------------------------------------------------------- the model
@dataclass
class _Tree:
    split_feature: list[int]
    threshold: list[float]
    decision_type: list[int]
    left: list[int]
    right: list[int]
    leaf_value: list[float]
    leaf_count: list[float]
    internal_count: list[float]
    cat_boundaries: list[int]
    cat_threshold: list[int]


def _parse(model_text: str, iterations: int) -> list[_Tree]:
    """The trees of LightGBM's text model (first ``iterations``), refusing what it can't do."""
    header, _, body = model_text.partition("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    if int(fields.get("num_tree_per_iteration", "1")) != 1:
        raise Unsupported("more than one tree per iteration (several classes)")
    trees = []
    for block in ("Tree=" + body).split("\nTree=")[:iterations]:
        lines = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if lines.get("is_linear", "0") != "0":
            raise Unsupported("linear trees")

        def numbers(key: str, kind: type = float, lines: dict[str, str] = lines) -> list[Any]:
            return [kind(v) for v in lines[key].split()] if lines.get(key) else []

        trees.append(
            _Tree(
                split_feature=numbers("split_feature", int),
                threshold=numbers("threshold"),
                decision_type=numbers("decision_type", int),
                left=numbers("left_child", int),
                right=numbers("right_child", int),
                leaf_value=numbers("leaf_value"),
                leaf_count=numbers("leaf_count"),
                internal_count=numbers("internal_count"),
                cat_boundaries=numbers("cat_boundaries", int),
                cat_threshold=numbers("cat_threshold", int),
            )
        )
    return trees


def _weights(depth: int) -> np.ndarray:
    """``w[d, s] = s!(d-1-s)!/d!`` correctly rounded, for d up to ``depth``."""
    w = np.zeros((depth + 1, depth + 1))
    for d in range(1, depth + 1):
        for s in range(d):
            w[d, s] = float(
                Fraction(math.factorial(s) * math.factorial(d - 1 - s), math.factorial(d))
            )
    return w


class TreeShap:
    """Per-feature contributions (log-odds) of a LightGBM booster, as ``pred_contrib``
    gives them without the bias column. Built once per loaded model."""

    def __init__(self, booster: Any, iterations: int) -> None:
        self._build(
            _parse(booster.model_to_string(num_iteration=iterations), iterations),
            booster.num_feature(),
        )

    def _build(self, trees: list[_Tree], n_features: int) -> None:
        self.n_features = n_features
        arrays: dict[str, list[Any]] = {k: [] for k in _FIELDS}
        node_start, leaf_start, cat_offset = [0], [0], 0
        tree_feature_start = [0]
        table_parts: list[np.ndarray] = []
        table_size, deepest = 0, 1
        for tree in trees:
            internal = len(tree.split_feature)
            for node in range(internal):
                arrays["feature"].append(tree.split_feature[node])
                arrays["kind"].append(tree.decision_type[node])
                arrays["threshold"].append(tree.threshold[node])
                if tree.decision_type[node] & 1:
                    cat = int(tree.threshold[node])
                    lo, hi = tree.cat_boundaries[cat], tree.cat_boundaries[cat + 1]
                    arrays["cat_start"].append(cat_offset + lo)
                    arrays["cat_len"].append(hi - lo)
                else:
                    arrays["cat_start"].append(0)
                    arrays["cat_len"].append(0)
            arrays["tree_feature"].extend(sorted(set(tree.split_feature)))
            tree_feature_start.append(len(arrays["tree_feature"]))
            cat_offset += len(tree.cat_threshold)
            arrays["cat_bits"].extend(tree.cat_threshold)
            node_start.append(node_start[-1] + internal)
            for leaf, path in enumerate(_paths(tree)):
                slots: dict[int, int] = {}
                z: list[float] = []
                for node, went_left, ratio in path:
                    feature = tree.split_feature[node]
                    if feature not in slots:
                        slots[feature] = len(z)
                        z.append(1.0)
                    z[slots[feature]] *= ratio
                    arrays["entry_node"].append(node)
                    arrays["entry_left"].append(went_left)
                    arrays["entry_slot"].append(slots[feature])
                arrays["entry_start"].append(len(arrays["entry_node"]))
                d = len(z)
                deepest = max(deepest, d)
                arrays["leaf_value"].append(tree.leaf_value[leaf] if tree.leaf_value else 0.0)
                arrays["leaf_d"].append(d)
                arrays["slot_start"].append(len(arrays["slot_z"]))
                arrays["slot_feature"].extend(slots)
                arrays["slot_z"].extend(z)
                if d and d <= TABLE_DEPTH and table_size + (d << d) <= TABLE_BUDGET:
                    arrays["table_offset"].append(table_size)
                    table_size += d << d
                    table_parts.append(np.empty(d << d))
                else:
                    arrays["table_offset"].append(-1)
            leaf_start.append(leaf_start[-1] + max(len(tree.leaf_value), 1))
        weights = _weights(max(deepest, 1))
        arrays["node_start"], arrays["leaf_start"] = node_start, leaf_start
        arrays["tree_feature_start"] = tree_feature_start
        arrays["entry_start"].insert(0, 0)
        typed = {
            name: np.asarray(arrays[name], dtype=_DTYPES.get(name, np.int64)) for name in _FIELDS
        }
        table = np.concatenate(table_parts) if table_parts else np.zeros(0)
        for leaf in np.flatnonzero(typed["table_offset"] >= 0).tolist():
            width, s0 = int(typed["leaf_d"][leaf]), int(typed["slot_start"][leaf])
            offset = int(typed["table_offset"][leaf])
            _fill_table(
                typed["slot_z"][s0 : s0 + width],
                width,
                float(typed["leaf_value"][leaf]),
                weights[width],
                table[offset : offset + (width << width)],
            )
        self._arrays = (*typed.values(), table, weights)
        self.trees = len(trees)
        self.table_entries = table_size
        self._memos: queue.SimpleQueue[tuple[np.ndarray, ...]] = queue.SimpleQueue()
        self._made, self._lock = 0, threading.Lock()

    def __call__(self, matrix: np.ndarray, threads: int = 1) -> np.ndarray:
        """Contributions of the rows of ``matrix`` (float64, LightGBM's feature order);
        ``threads`` > 1 splits the rows over that many threads (the kernel drops the GIL)."""
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        out = np.zeros((x.shape[0], self.n_features))
        if threads <= 1 or len(x) < 2_000:
            self._explain_rows(x, out)
            return out
        bounds = np.linspace(0, len(x), threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(self._explain_rows, np.split(x, bounds[1:-1]), np.split(out, bounds[1:-1]))
            )
        return out

    def _explain_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        memo = self._take_memo()
        try:
            _explain(x, out, self._arrays, memo)
        finally:
            if len(memo[0]):  # one that remembers nothing is not kept
                self._memos.put(memo)

    def _take_memo(self) -> tuple[np.ndarray, ...]:
        """A memo of decisions seen → the tree's values, for one thread at a time: from the
        pool, or a new one (at most ``MEMOS``; past that, one that remembers nothing)."""
        try:
            return self._memos.get_nowait()
        except queue.Empty:
            pass
        slots = 1 << max(int(MEMO_SLOTS // max(self.trees, 1)).bit_length() - 1, 0)
        with self._lock:
            self._made += 1
            if self._made > MEMOS or slots < 4:
                slots = 0
        keys = np.full(self.trees * slots, -1, dtype=np.int64)
        store = np.empty(MEMO_VALUES if slots else 0)
        return keys, np.empty_like(keys), store, np.zeros(1 + self.trees, dtype=np.int64)


# The kernel's arrays in the order it unpacks them (then the tables and the weights).
_FIELDS = (
    "node_start", "feature", "kind", "threshold", "cat_start", "cat_len", "cat_bits",
    "leaf_start", "leaf_value", "leaf_d", "slot_start", "slot_feature", "slot_z", "entry_start",
    "entry_node", "entry_left", "entry_slot", "table_offset", "tree_feature_start",
    "tree_feature",
)  # fmt: skip
# The kernel's arrays that are not int64.
_DTYPES = {
    "threshold": np.float64,
    "leaf_value": np.float64,
    "slot_z": np.float64,
    "cat_bits": np.uint32,
}


def _paths(tree: _Tree) -> list[list[tuple[int, bool, float]]]:
    """Per leaf (in leaf order): its path from the root as (node, went left, count ratio)."""
    leaves = max(len(tree.leaf_value), 1)
    paths: list[list[tuple[int, bool, float]]] = [[] for _ in range(leaves)]
    if not tree.split_feature:
        return paths

    def count(child: int) -> float:
        return tree.leaf_count[~child] if child < 0 else tree.internal_count[child]

    stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        total = tree.internal_count[node]
        for child, went_left in ((tree.left[node], True), (tree.right[node], False)):
            step = [*path, (node, went_left, count(child) / total)]
            if child < 0:
                paths[~child] = step
            else:
                stack.append((child, step))
    return paths


def compile_kernels() -> None:
    """Compile (and cache, see NUMBA_CACHE_DIR) the kernels on a one-split tree, so that
    loading a model later does not: the container image runs this when it is built."""
    stump = _Tree([0], [0.0], [2], [-1], [-2], [0.5, -0.5], [1.0, 1.0], [2.0], [], [])
    shap = TreeShap.__new__(TreeShap)
    shap._build([stump], 1)
    shap(np.zeros((1, 1)))
    _leaf_direct(np.ones(1), 1, 1.0, _weights(1)[1], 1, np.empty(64), np.empty(65))


if __name__ == "__main__":
    compile_kernels()
