"""Finite groups as Cayley tables (pure numpy), with the metadata the scaling laws need.

A group spec is a string (spaces between tokens are optional; family words are case-insensitive):

- ``"23"``: the cyclic group Z_23; ``"2x3x4"``: Z_2 x Z_3 x Z_4. Product elements are flattened in
  mixed radix with the first factor least significant, as in the paper's code.
- ``"mulP"`` (P prime), e.g. ``"mul23"``: multiplication mod P on Z_P^*, cyclic of order P-1;
  residue r is element r-1.
- ``"dihedralN"``, e.g. ``"dihedral14"``: the dihedral group of ORDER N (symmetries of the
  N/2-gon; N even, >= 6). The number is always the order, never the polygon's size.
- ``"dicyclicN"``, e.g. ``"dicyclic12"``: the dicyclic group of order N (N divisible by 4, >= 8;
  the generalised quaternion group when N is a power of 2, ``"dicyclic8"`` = Q_8).
- ``"semidirect:M:K:R"``, e.g. ``"semidirect:7:3:2"``: Z_M ⋊ Z_K = <x, y | x^M = y^K = 1,
  y x y^-1 = x^R>, order M·K, with R^K ≡ 1 and R ≢ 1 (mod M). Its largest irrep degree is the
  multiplicative order of R mod M.
- ``"SN"`` / ``"AN"``, e.g. ``"S4"``, ``"A5"``: symmetric / alternating group on N points.
- ``"SL2:P"`` (P prime), e.g. ``"SL2:3"``: SL(2, P), the 2x2 matrices of determinant 1 mod P.
- ``"G1xG2x..."``, e.g. ``"S4x3"``, ``"dicyclic8xA4"``: the direct product of groups of the forms
  above, numbered and enumerated as the cyclic products (which are the case of cyclic factors).
- ``"expr:EXPR mod M"``, e.g. ``"expr:x**2+x*y+y**2 mod 23"``: the table (x, y) -> EXPR mod M. This
  is not a group: ``is_group`` is False, ``irrep_degrees`` is () and ``max_irrep_degree`` is 0,
  ``abelian`` means commutative. EXPR may use x, y, integer constants, +, -, *, parentheses and
  ** with a constant exponent 0..16; it is parsed with ``ast``, never evaluated as Python.

Outside the cyclic families, elements are numbered by the constructions below and the dataset
enumerates them in index order. Every group table is checked (``check_group``) when it is built;
its character table, irrep degrees and irrep facts (``irreps``) are computed from the table itself
on first use, once per Group (``parse_group`` returns the same Group for the same spec).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial

import numpy as np

from grokjax import irreps
from grokjax.errors import GroupError
from grokjax.expressions import MAX_EXPONENT, MAX_EXPRESSION_CHARS, expression_table


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
    is_group: bool = True  # False for "expr:" tables, which have no irreps

    @cached_property
    def characters(self) -> irreps.CharacterTable:
        """The checked complex character table (seconds for the largest groups: irreps.py)."""
        if not self.is_group:
            raise GroupError(f"{self.spec!r} is not a group: it has no characters")
        return irreps.character_table(self.table)

    @cached_property
    def irrep_facts(self) -> irreps.IrrepFacts:
        """Types, real dimensions, Theorem 3's width and a one-line description of the irreps."""
        if self.is_group and self.abelian:  # closed form, no table needed
            return irreps.abelian_facts(self.table)
        return irreps.facts(self.characters)

    @cached_property
    def irrep_degrees(self) -> tuple[int, ...]:
        """Degrees of the complex irreps, ascending; () for a table that is not a group."""
        return tuple(irrep.degree for irrep in self.irrep_facts.irreps) if self.is_group else ()

    @property
    def max_irrep_degree(self) -> int:
        """Largest irrep degree; 0 for a table that is not a group."""
        return max(self.irrep_degrees, default=0)


MAX_ORDER = 2048  # cap for every group: tables are order², datasets order^num_ops rows
FULL_ASSOCIATIVITY_MAX_ORDER = 128  # order³ ≤ 2M triples: cheap enough to check every one
MAX_SPEC_CHARS = MAX_EXPRESSION_CHARS + 32  # "expr:" and " mod M" around the longest expression

# (syntax, description, example): the accepted spec forms, for error messages and `grokjax list`.
GROUP_FAMILIES: list[tuple[str, str, str]] = [
    ("N", f"cyclic group Z_N (addition mod N), 2 <= N <= {MAX_ORDER}", "23"),
    ("N1xN2x...", f"product of cyclic groups Z_N1 x Z_N2 x ..., order <= {MAX_ORDER}", "2x3x4"),
    ("mulP", "multiplication mod prime P: cyclic of order P-1, residue r is element r-1", "mul23"),
    ("dihedralN", f"dihedral group of order N (N even, 6 <= N <= {MAX_ORDER})", "dihedral14"),
    ("dicyclicN", f"dicyclic group of order N (4 | N, 8 <= N <= {MAX_ORDER}); dicyclic8 = Q_8",
     "dicyclic12"),
    ("semidirect:M:K:R", "Z_M ⋊ Z_K with y x y^-1 = x^R, R^K = 1 and R != 1 (mod M)",
     "semidirect:7:3:2"),
    ("SN", "symmetric group on N points, 3 <= N <= 6", "S4"),
    ("AN", "alternating group on N points, 3 <= N <= 6", "A5"),
    ("SL2:P", "SL(2, P), 2x2 matrices of determinant 1 mod prime P = 2, 3, 5, 7 or 11 (order "
     f"P(P²-1) <= {MAX_ORDER})", "SL2:3"),
    ("G1xG2x...", f"direct product of groups of the forms here except expr, order <= {MAX_ORDER}",
     "S4x3"),
    ("expr:EXPR mod M", "table x, y -> EXPR mod M, not a group; EXPR uses x, y, integers, "
     f"+ - * ( ) and ** with a constant exponent <= {MAX_EXPONENT}", "expr:x**2+x*y+y**2 mod 23"),
]

_ACCEPTED_FORMS = "accepted forms:\n" + "\n".join(
    f"  {syntax:<18} {description} (e.g. {example!r})" for syntax, description, example in
    GROUP_FAMILIES
)


def _spec_error(spec: str, problem: str) -> GroupError:
    return GroupError(f"group {spec!r}: {problem}; {_ACCEPTED_FORMS}", problem)


# ---------------------------------------------------------------------------------------------
# Checking a table and reading its structure


def identity_of(table: np.ndarray) -> int | None:
    """Index e with e·a = a·e = a for every a, or None."""
    elements = np.arange(len(table))
    found = np.flatnonzero((table == elements).all(axis=1) & (table.T == elements).all(axis=1))
    return int(found[0]) if len(found) else None


def inverses(table: np.ndarray, identity: int) -> np.ndarray:
    """inv[a] with a·inv[a] = e (the first such column; in a group it is unique and two-sided)."""
    return np.argmax(table == identity, axis=1)


def _light_generators(table: np.ndarray, identity: int) -> list[int] | None:
    """Greedy generators whose left-normed products ((g1·g2)·g3)··· reach every element.

    In a group each new generator at least doubles the subgroup reached, so more than log2(order)
    generators means the table is not a group: return None.
    """
    order = len(table)
    reached = np.zeros(order, dtype=bool)
    reached[identity] = True  # e satisfies Light's test by the identity law; it needs no word
    generators: list[int] = []
    while not reached.all():
        if len(generators) >= max(1, math.floor(math.log2(order))):
            return None
        generators.append(int(np.argmin(reached)))
        reached[generators[-1]] = True
        frontier = np.flatnonzero(reached)  # old words times the new generator are new words
        while len(frontier):
            products = np.unique(table[np.ix_(frontier, generators)])
            frontier = products[~reached[products]]
            reached[frontier] = True
    return generators


def _associative(table: np.ndarray, identity: int) -> bool:
    """(a·b)·c == a·(b·c) for all a, b, c: every triple up to FULL_ASSOCIATIVITY_MAX_ORDER, else
    Light's test, which needs b only over a generating set (the b that pass form a submagma)."""
    order = len(table)
    if order <= FULL_ASSOCIATIVITY_MAX_ORDER:
        return bool(np.array_equal(table[table], table[np.arange(order)[:, None, None], table]))
    generators = _light_generators(table, identity)
    return generators is not None and all(
        np.array_equal(table[table[:, g]], table[:, table[g]]) for g in generators
    )


def check_group(table: np.ndarray) -> None:
    """Raise GroupError unless ``table`` is the Cayley table of a group on 0..order-1."""
    table = np.asarray(table)
    order = len(table)
    if table.ndim != 2 or table.shape != (order, order) or order == 0:
        raise GroupError(f"a Cayley table must be square and non-empty, got shape {table.shape}")
    if not np.issubdtype(table.dtype, np.integer) or table.min() < 0 or table.max() >= order:
        raise GroupError(f"table entries must be integers in 0..{order - 1} (closure)")
    identity = identity_of(table)
    if identity is None:
        raise GroupError("table has no identity element")
    inv = inverses(table, identity)
    elements = np.arange(order)
    if not ((table[elements, inv] == identity) & (table[inv, elements] == identity)).all():
        raise GroupError("some element has no two-sided inverse")
    if not _associative(table, identity):
        raise GroupError("table is not associative")


def group_from_table(spec: str, name: str, table: np.ndarray) -> Group:
    """Check ``table`` and derive the metadata; elements are enumerated in index order."""
    table = np.ascontiguousarray(table, dtype=np.int32)
    check_group(table)
    order = len(table)
    abelian = bool(np.array_equal(table, table.T))
    enumeration = np.arange(order, dtype=np.int32)
    return Group(spec, name, order, table, enumeration, abelian)


# ---------------------------------------------------------------------------------------------
# Tables of the families


def multiplicative_table(p: int) -> np.ndarray:
    """Z_p^*: element i is residue i+1, so table[a, b] = ((a+1)(b+1) mod p) - 1."""
    residues = np.arange(1, p, dtype=np.int64)
    return (np.outer(residues, residues) % p - 1).astype(np.int32)


def semidirect_table(m: int, k: int, r: int) -> np.ndarray:
    """Z_m ⋊_r Z_k: element i + m·j is x^i y^j, and x^i y^j · x^u y^v = x^(i + u·r^j) y^(j+v)."""
    index = np.arange(m * k)
    i, j = index % m, index // m
    twist = np.array([pow(r, e, m) for e in range(k)])[j]  # r^j for each left factor
    x_part = (i[:, None] + i[None, :] * twist[:, None]) % m
    y_part = (j[:, None] + j[None, :]) % k
    return (x_part + m * y_part).astype(np.int32)


def dicyclic_table(n: int) -> np.ndarray:
    """Dic_n = <a, x | a^2n = 1, x^2 = a^n, x a x^-1 = a^-1>, order 4n: element i + 2n·j is a^i x^j,
    and a^i x^j · a^u x^v = a^(i + (-1)^j u + n·j·v) x^(j+v)."""
    index = np.arange(4 * n)
    i, j = index % (2 * n), index // (2 * n)
    sign = 1 - 2 * j
    a_part = (i[:, None] + sign[:, None] * i[None, :] + n * j[:, None] * j[None, :]) % (2 * n)
    x_part = (j[:, None] + j[None, :]) % 2
    return (a_part + 2 * n * x_part).astype(np.int32)


def permutation_table(perms: np.ndarray) -> np.ndarray:
    """Cayley table of a set of permutations closed under composition, (a·b)(t) = a(b(t)).

    ``perms`` (count, n) must be in lexicographic order, so their base-n codes are sorted."""
    n = perms.shape[1]
    place = n ** np.arange(n - 1, -1, -1)
    composed = perms[np.arange(len(perms))[:, None, None], perms[None, :, :]]  # [a, b] = a∘b
    return np.searchsorted(perms @ place, composed @ place).astype(np.int32)


def symmetric_perms(n: int, even_only: bool) -> np.ndarray:
    """All permutations of 0..n-1 in lexicographic order (identity first), or only the even ones."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    if even_only:
        inversions = sum(perms[:, a] > perms[:, b] for a, b in itertools.combinations(range(n), 2))
        perms = perms[inversions % 2 == 0]
    return perms


def special_linear_table(p: int) -> np.ndarray:
    """SL(2, p): element i is the i-th matrix A of determinant 1 in increasing order of the entries
    (a, b, c, d) of A - I mod p read as base-p digits, so the identity is element 0."""
    shifted = np.array(list(itertools.product(range(p), repeat=4)))  # A - I, in increasing order
    a, b, c, d = ((shifted + [1, 0, 0, 1]) % p).T
    keep = (a * d - b * c) % p == 1
    matrices = np.stack([a, b, c, d], axis=1)[keep].reshape(-1, 2, 2)
    place = p ** np.arange(3, -1, -1)
    products = np.einsum("xij,yjk->xyik", matrices, matrices) - np.eye(2, dtype=int)  # A·B - I
    codes = (products % p).reshape(len(matrices), len(matrices), 4) @ place
    return np.searchsorted(shifted[keep] @ place, codes).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Parsing specs


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _cyclic(spec: str, n: int) -> Group:
    if n < 2:
        raise _spec_error(spec, f"a cyclic group needs order >= 2, got {n}")
    if n > MAX_ORDER:  # checked before the order² table is built
        raise _spec_error(spec, f"order {n} is above the limit {MAX_ORDER}")
    elements = np.arange(n)
    return group_from_table(spec, f"Z_{n}", (elements[:, None] + elements) % n)


def _multiplicative(spec: str, p: int) -> Group:
    if not _is_prime(p) or not 3 <= p <= MAX_ORDER + 1:
        raise _spec_error(spec, f"mulP needs a prime 3 <= P <= {MAX_ORDER + 1}, got {p}")
    return group_from_table(spec, f"Z_{p}^* (multiplication mod {p})", multiplicative_table(p))


def _dihedral(spec: str, order: int) -> Group:
    if order % 2 or not 6 <= order <= MAX_ORDER:
        raise _spec_error(spec, f"dihedralN needs an even order 6 <= N <= {MAX_ORDER}, got {order}")
    n = order // 2
    name = f"dihedral group of order {order} (symmetries of the {n}-gon)"
    return group_from_table(spec, name, semidirect_table(n, 2, n - 1))


def _dicyclic(spec: str, order: int) -> Group:
    if order % 4 or not 8 <= order <= MAX_ORDER:
        raise _spec_error(
            spec, f"dicyclicN needs an order divisible by 4, 8 <= N <= {MAX_ORDER}, got {order}"
        )
    return group_from_table(spec, f"dicyclic group of order {order}", dicyclic_table(order // 4))


def _semidirect(spec: str, m: int, k: int, r: int) -> Group:
    if not (m >= 3 and k >= 2 and m * k <= MAX_ORDER and r % m != 1 and pow(r, k, m) == 1):
        raise _spec_error(
            spec,
            f"semidirect:M:K:R needs M >= 3, K >= 2, M·K <= {MAX_ORDER}, "
            f"R^K = 1 and R != 1 (mod M), got M={m}, K={k}, R={r}",
        )
    name = f"Z_{m} ⋊ Z_{k} (y x y^-1 = x^{r % m})"
    return group_from_table(spec, name, semidirect_table(m, k, r % m))


def _permutation_group(spec: str, n: int, alternating: bool) -> Group:
    letter, word = ("A", "alternating") if alternating else ("S", "symmetric")
    if not 3 <= n <= 6:
        raise _spec_error(spec, f"{letter}N needs 3 <= N <= 6, got {n}")
    table = permutation_table(symmetric_perms(n, even_only=alternating))
    return group_from_table(spec, f"{letter}_{n} ({word} group on {n} points)", table)


def _special_linear(spec: str, p: int) -> Group:
    if not _is_prime(p) or p * (p * p - 1) > MAX_ORDER:
        raise _spec_error(spec, f"SL2:P needs a prime P with P(P²-1) <= {MAX_ORDER} "
                          f"(P = 2, 3, 5, 7 or 11), got {p}")
    name = f"SL(2,{p}) (matrices of determinant 1 mod {p})"
    return group_from_table(spec, name, special_linear_table(p))


def _direct_product(spec: str, parts: list[str]) -> Group:
    """Element i0 + |G0|·i1 + |G0|·|G1|·i2 + ... is (g_i0, g_i1, ...), factor 0 least significant,
    enumerated as itertools.product over the factors' own enumerations with factor 0 outermost:
    for cyclic factors, the paper's mixed radix."""
    factors = []
    for part in parts:
        try:
            factors.append(parse_group(part))
        except GroupError as err:
            raise _spec_error(spec, f"factor {part!r}: {err.problem}") from None
    order = math.prod(factor.order for factor in factors)
    if order > MAX_ORDER:  # checked before the order² table is built
        raise _spec_error(spec, f"order {order} is above the limit {MAX_ORDER}")
    table, enumeration = factors[0].table, factors[0].enumeration
    for factor in factors[1:]:
        n = len(table)  # [b, a, b', a'] = (a·a') + n·(b·b'): rows and columns a + n·b
        table = table[None, :, None, :] + n * factor.table[:, None, :, None]
        table = table.reshape(n * factor.order, n * factor.order)
        enumeration = (enumeration[:, None] + n * factor.enumeration).reshape(-1)
    check_group(table)
    name = " x ".join(f"({factor.name})" if " " in factor.name else factor.name
                      for factor in factors)
    return Group(spec, name, order, table, enumeration, all(f.abelian for f in factors))


def _expression(spec: str, expression: str, modulus: int) -> Group:
    if not 2 <= modulus <= MAX_ORDER:
        raise _spec_error(spec, f"expr needs a modulus 2 <= M <= {MAX_ORDER}, got {modulus}")
    try:
        table = expression_table(expression, modulus)
    except GroupError as err:
        raise _spec_error(spec, str(err)) from None
    name = f"{expression.strip()} mod {modulus} (not a group)"
    abelian = bool(np.array_equal(table, table.T))  # here: commutative
    enumeration = np.arange(modulus, dtype=np.int32)
    return Group(spec, name, modulus, table, enumeration, abelian, is_group=False)


_EXPRESSION = re.compile(r"^expr:(?P<body>.+)\bmod\s*(?P<modulus>\d+)\s*$", re.DOTALL)
_FAMILY_PATTERNS = [
    (re.compile(r"^(\d+)$"), _cyclic),
    (re.compile(r"^mul(\d+)$", re.IGNORECASE), _multiplicative),
    (re.compile(r"^dihedral(\d+)$", re.IGNORECASE), _dihedral),
    (re.compile(r"^dicyclic(\d+)$", re.IGNORECASE), _dicyclic),
    (re.compile(r"^semidirect:(\d+):(\d+):(\d+)$", re.IGNORECASE), _semidirect),
    (re.compile(r"^S(\d+)$", re.IGNORECASE), partial(_permutation_group, alternating=False)),
    (re.compile(r"^A(\d+)$", re.IGNORECASE), partial(_permutation_group, alternating=True)),
    (re.compile(r"^SL2:(\d+)$", re.IGNORECASE), _special_linear),
]


def family(spec: str) -> str:
    """The family a spec names, from its syntax alone: "cyclic" ("23", and "mul23", cyclic of
    order 22), "cyclic product" ("2x3x4"), "product" ("S4x3"), or the family word ("dihedral",
    "dicyclic", "semidirect", "symmetric", "alternating", "SL2", "expr")."""
    text = str(spec).strip().replace(" ", "")
    if text.startswith("expr:"):
        return "expr"
    if text.isdigit():
        return "cyclic"
    if "x" in text:
        return "cyclic product" if all(part.isdigit() for part in text.split("x")) else "product"
    word = re.match(r"[A-Za-z]+", text)
    word = word[0].lower() if word else ""
    return {"s": "symmetric", "a": "alternating", "sl": "SL2", "mul": "cyclic"}.get(word, word)


@lru_cache(maxsize=64)
def parse_group(spec: str) -> Group:
    """Build the group named by ``spec``; raise GroupError with the accepted forms otherwise."""
    raw = str(spec).strip()
    if len(raw) > MAX_SPEC_CHARS:
        raise GroupError(f"group spec longer than {MAX_SPEC_CHARS} characters")
    expression = _EXPRESSION.match(raw)
    if expression:
        return _expression(raw, expression["body"], int(expression["modulus"]))
    text = raw.replace(" ", "")
    if "x" in text and not text.startswith("expr:"):  # no family word holds an "x"
        return _direct_product(text, text.split("x"))
    for pattern, build in _FAMILY_PATTERNS:
        match = pattern.match(text)
        if match:
            return build(text, *(int(g) for g in match.groups()))
    raise _spec_error(spec, "unknown group")
