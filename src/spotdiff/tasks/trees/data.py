"""Seeded random arithmetic expression trees, stored as numpy node arrays (no framework here).

Each tree is kept in its linearised, topological form: the leaves first (digits 0-9), then the
internal nodes in post-order, each an op with the indices of its two children. Node i < n_leaves
is a leaf; node n_leaves + k is internal node k; the last node is the root. A recursion walks the
child indices from the root; a scan runs the internal nodes in order (children always come first).
"""

from __future__ import annotations

import numpy as np

OPS = ("+", "-", "*")
DIGITS = 10


def random_tree(rng: np.random.Generator, max_depth: int, leaf_prob: float) -> tuple[list, list, list, list]:
    """(leaf digits, ops, left, right): the root is internal; below it a node is a leaf with
    probability leaf_prob, and always at max_depth."""
    leaves: list[int] = []
    internals: list[tuple[int, tuple[str, int], tuple[str, int]]] = []

    def grow(depth: int) -> tuple[str, int]:
        if depth == max_depth or (depth > 0 and rng.random() < leaf_prob):
            leaves.append(int(rng.integers(0, DIGITS)))
            return "leaf", len(leaves) - 1
        op = int(rng.integers(0, len(OPS)))
        left, right = grow(depth + 1), grow(depth + 1)
        internals.append((op, left, right))
        return "internal", len(internals) - 1

    grow(0)

    def index(node: tuple[str, int]) -> int:
        return node[1] if node[0] == "leaf" else len(leaves) + node[1]

    return (leaves, [op for op, _, _ in internals], [index(lft) for _, lft, _ in internals],
            [index(rgt) for _, _, rgt in internals])


def tree_value(leaves, ops, left, right) -> int:
    """The expression's value, computed bottom-up in node order."""
    values = list(leaves)
    for op, lft, rgt in zip(ops, left, right):
        a, b = values[lft], values[rgt]
        values.append(a + b if op == 0 else a - b if op == 1 else a * b)
    return values[-1]


def make_trees(
    rng: np.random.Generator, count: int, max_depth: int, leaf_prob: float
) -> dict[str, np.ndarray]:
    """`count` trees as padded arrays: tokens (N, 2**D), ops/left/right (N, 2**D - 1), n_leaves (N,),
    labels (N,) = 1 when the value is positive, and value (N,)."""
    width = 2**max_depth
    tokens = np.zeros((count, width), np.int32)
    ops, left, right = (np.zeros((count, width - 1), np.int32) for _ in range(3))
    n_leaves, values = np.zeros(count, np.int32), np.zeros(count, np.int64)
    for i in range(count):
        tree = random_tree(rng, max_depth, leaf_prob)
        n = len(tree[0])
        n_leaves[i], values[i] = n, tree_value(*tree)
        tokens[i, :n] = tree[0]
        ops[i, : n - 1], left[i, : n - 1], right[i, : n - 1] = tree[1], tree[2], tree[3]
    return {
        "tokens": tokens,
        "ops": ops,
        "left": left,
        "right": right,
        "n_leaves": n_leaves,
        "value": values,
        "labels": (values > 0).astype(np.int64),
    }


def tree_at(
    data: dict[str, np.ndarray], split: str, i: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """Tree i of a split: (leaf tokens (L,), ops (L-1,), left, right as tuples of node indices)."""
    n = int(data[f"n_leaves_{split}"][i])
    return (
        data[f"tokens_{split}"][i, :n],
        data[f"ops_{split}"][i, : n - 1],
        tuple(int(v) for v in data[f"left_{split}"][i, : n - 1]),
        tuple(int(v) for v in data[f"right_{split}"][i, : n - 1]),
    )


def structure_of(data: dict[str, np.ndarray], split: str, i: int) -> tuple:
    """The tree's shape, without its digits and ops: (n_leaves, left, right). Hashable."""
    _, _, left, right = tree_at(data, split, i)
    return int(data[f"n_leaves_{split}"][i]), left, right


def node_bucket(n_nodes: int) -> int:
    """The next power of two > n_nodes (at least one padding slot, the scratch node of padded steps)."""
    return 1 << int(n_nodes).bit_length()


def linearise(
    data: dict[str, np.ndarray], split: str, index: np.ndarray, batch_size: int
) -> dict[str, np.ndarray]:
    """A batch as fixed-size node arrays for a scan, padded to the bucket of its largest tree and to
    `batch_size` trees (padding trees have weight 0), so one compile serves every batch of a bucket.

    leaf_tokens (B, N), is_leaf (B, N), step_target/step_op/step_left/step_right (B, N // 2):
    internal step s writes node step_target; padded steps write the scratch node N - 1. root (B,),
    labels (B,), weight (B,) = 1 for real trees."""
    n_leaves = data[f"n_leaves_{split}"][index]
    bucket = node_bucket(int(2 * n_leaves.max() - 1))
    steps = bucket // 2
    out = {
        "leaf_tokens": np.zeros((batch_size, bucket), np.int32),
        "is_leaf": np.zeros((batch_size, bucket), np.float32),
        "step_target": np.full((batch_size, steps), bucket - 1, np.int32),
        "step_op": np.zeros((batch_size, steps), np.int32),
        "step_left": np.zeros((batch_size, steps), np.int32),
        "step_right": np.zeros((batch_size, steps), np.int32),
        "root": np.zeros(batch_size, np.int32),
        "labels": np.zeros(batch_size, np.int32),
        "weight": np.zeros(batch_size, np.float32),
    }
    for row, i in enumerate(index):
        tokens, ops, left, right = tree_at(data, split, int(i))
        n, k = len(tokens), len(ops)
        out["leaf_tokens"][row, :n], out["is_leaf"][row, :n] = tokens, 1.0
        out["step_target"][row, :k] = np.arange(n, n + k)
        out["step_op"][row, :k], out["step_left"][row, :k], out["step_right"][row, :k] = ops, left, right
        out["root"][row], out["weight"][row] = n + k - 1, 1.0
        out["labels"][row] = data[f"labels_{split}"][i]
    return out
