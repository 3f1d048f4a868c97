"""The full |G|^k operation table and the paper code's train/test split, in numpy.

The split reproduces ``sklearn.model_selection.train_test_split(test_size=ts, random_state=seed)``
(shuffled, not stratified) without scikit-learn: n_test = ceil(ts·N),
perm = RandomState(seed).permutation(N), test = perm[:n_test], train = perm[n_test:].
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from grokjax.groups import Group

CRITICAL_RATIO_MULTIPLIER = 2.7482  # the paper code's empirical constant (natural log)


class Table(NamedTuple):
    inputs: np.ndarray  # (N, num_ops) int32 operand indices, in the paper code's row order
    labels: np.ndarray  # (N,) int32 index of op_0·op_1·...


def operation_table(group: Group, num_ops: int) -> Table:
    """Every operand tuple, enumerated like ``itertools.product(elements, repeat=num_ops)``."""
    rows = np.array(list(itertools.product(group.enumeration, repeat=num_ops)), dtype=np.int32)
    labels = rows[:, 0]
    for j in range(1, num_ops):
        labels = group.table[labels, rows[:, j]]
    return Table(rows, labels.astype(np.int32))


def critical_ratio_test_size(order: int, delta: float, multiplier: float) -> float:
    """The code's critical-ratio mode: train fraction (multiplier − δ)·ln|G|/|G|, clipped."""
    return float(np.clip(1.0 - math.log(order) / order * (multiplier - delta), 0.0, 1.0))


def split_sizes(num_rows: int, test_size: float) -> tuple[int, int]:
    """(n_train, n_test) as sklearn rounds them: the test side is rounded up."""
    n_test = math.ceil(test_size * num_rows)
    return num_rows - n_test, n_test


def split(num_rows: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx), each in the order the paper's code uses them."""
    _, n_test = split_sizes(num_rows, test_size)
    perm = np.random.RandomState(seed).permutation(num_rows).astype(np.int32)
    return perm[n_test:], perm[:n_test]
