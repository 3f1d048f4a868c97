"""Finite groups as Cayley tables (pure numpy), with the metadata the scaling laws need.

A group spec is a string: ``"23"`` is Z_23, ``"2x3x4"`` is Z_2 x Z_3 x Z_4. Product elements are
flattened in mixed radix with the first factor least significant, as in the paper's code.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


class GroupError(ValueError):
    """A group spec that names no group grokjax can build."""


@dataclass(frozen=True, eq=False)
class Group:
    spec: str  # the string the user wrote, e.g. "2x3x4"
    name: str  # human-readable, e.g. "Z_2 x Z_3 x Z_4"
    order: int
    table: np.ndarray  # (order, order) int32: table[a, b] = index of a·b
    # The order in which the paper's code enumerates elements when it builds the dataset
    # (itertools.product over components, component 0 outermost), as flat indices.
    enumeration: np.ndarray  # (order,) int32
    abelian: bool
    irrep_degrees: tuple[int, ...]  # complex irreducible representations, with multiplicity 1 each

    @property
    def max_irrep_degree(self) -> int:
        return max(self.irrep_degrees)


_PRODUCT = re.compile(r"^\d+(x\d+)*$")


def cyclic_product(orders: tuple[int, ...], spec: str) -> Group:
    """Z_{o0} x Z_{o1} x ...; flat index c0 + c1·o0 + c2·o0·o1 + ... (component 0 least significant)."""
    order = int(np.prod(orders))
    radix = np.cumprod((1,) + orders[:-1])
    components = (np.arange(order)[:, None] // radix) % np.asarray(orders)  # (order, factors)
    summed = (components[:, None, :] + components[None, :, :]) % np.asarray(orders)
    table = (summed @ radix).astype(np.int32)
    enumeration = np.array(
        [np.dot(c, radix) for c in itertools.product(*(range(o) for o in orders))], dtype=np.int32
    )
    name = " x ".join(f"Z_{o}" for o in orders)
    return Group(spec, name, order, table, enumeration, True, (1,) * order)


@lru_cache(maxsize=64)
def parse_group(spec: str) -> Group:
    """Build the group named by ``spec``; raise GroupError with the accepted forms otherwise."""
    text = str(spec).strip().replace(" ", "")
    if not _PRODUCT.match(text):
        raise GroupError(
            f"unknown group {spec!r}: use an order such as '23' (cyclic Z_23) or a product of "
            "cyclic orders such as '2x3x4'"
        )
    orders = tuple(int(o) for o in text.split("x"))
    if any(o < 2 for o in orders):
        raise GroupError(f"group {spec!r}: every cyclic factor needs order >= 2, got {orders}")
    return cyclic_product(orders, text)
