"""Complex character tables of finite groups from their Cayley tables, and the irrep facts the Li₂
theorems use: Frobenius–Schur types, real dimensions and Theorem 3's sufficient width.

Abelian groups are exact: their characters are built generator by generator as integer exponents
of exp(2πi/|G|). Other groups use Burnside's method: the central characters ω(C) = |C|·χ(g_C)/χ(1)
are the common eigenvectors of the class-multiplication matrices, and rescaled by 1/sqrt(|C|) they
are orthonormal: a random real combination is real symmetric and diagonalised with ``eigh``, its
double eigenvalues (exactly the conjugate pairs χ, χ̄) are split in closed form, and a fresh
complex combination confirms that the eigenvectors are common to the whole class algebra. Every
table is then checked (row and column orthogonality, Σ χ(1)² = |G|, integral indicators, χ̄ among
the rows) and a failure raises CharacterTableError: a bug or numerical trouble, never bad input.

Cost, for k classes: one k×k eigh and three k×k complex products, plus O(|G|·k) to build the
class algebra. Milliseconds up to order 200 and for every group with few classes (S6, SL(2,11),
A5 x Z_34); about a second for dihedral2048 (k = 515); seconds for the k ≈ 1000-2048 of large
abelian groups and direct products with a large abelian factor (S3x341, dicyclic8x256). Abelian
groups' IrrepFacts need no table (``abelian_facts``).

This module works on plain tables and imports nothing of grokjax, so that ``groups.Group`` can
compute its degrees, table and facts here, lazily and once per group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

KINDS = {1: "real", 0: "complex", -1: "quaternionic"}  # by Frobenius–Schur indicator
LETTERS = {"real": "R", "complex": "C", "quaternionic": "H"}  # in IrrepFacts.description
TOLERANCE = 1e-7  # on normalised quantities that must be integers or vanish
# Relative gap under which two eigenvalues count as equal: far above eigh's errors (~1e-14), far
# below the typical gap between distinct ones (~1/classes), so false pairs are rare (then retried)
PAIRING = 1e-10
ATTEMPTS = 4  # random combinations tried before giving up (two eigenvalues may nearly collide)


class CharacterTableError(RuntimeError):
    """A computed character table failed its checks: a bug or numerical trouble, not bad input."""


@dataclass(frozen=True, eq=False)
class CharacterTable:
    """The complex irreps as rows: the trivial one first, then by degree, then real, complex (each
    next to its conjugate), quaternionic."""

    values: np.ndarray  # (irreps, classes) complex: values[i, c] = χ_i(g) for every g in class c
    classes: np.ndarray  # (order,) class of each element, classes numbered by their smallest one
    class_sizes: np.ndarray  # (classes,)
    degrees: np.ndarray  # (irreps,) χ_i(1)
    indicators: np.ndarray  # (irreps,) Frobenius–Schur indicators (1/|G|) Σ_g χ_i(g²): 1, 0, -1
    conjugates: np.ndarray  # (irreps,) index of the row χ̄_i: i itself unless χ_i is complex


class Irrep(NamedTuple):
    degree: int  # complex dimension d
    kind: str  # "real", "complex" or "quaternionic"
    real_dim: int  # dimension of the real irrep it belongs to: d if real; 2d if complex (with χ̄)
    #                or quaternionic (its real form)


@dataclass(frozen=True)
class IrrepFacts:
    """The irreps of a group, in CharacterTable order, as the Li₂ theorems count them."""

    irreps: tuple[Irrep, ...]  # every complex irrep (χ and χ̄ both), the trivial one first
    # Every real irrep once: a conjugate pair χ, χ̄ of complex irreps is ONE real irrep of dimension
    # 2d (listed with kind "complex"), as in Theorem 2, whose local maxima live in H_k ⊕ H_k̄.
    real_irreps: tuple[Irrep, ...]

    @property
    def max_degree(self) -> int:
        """Largest complex degree d_k (Group.max_irrep_degree)."""
        return max(irrep.degree for irrep in self.irreps)

    @property
    def max_real_dim(self) -> int:
        return max(irrep.real_dim for irrep in self.irreps)

    @property
    def theorem3_width(self) -> int:
        """Theorem 3's sufficient width K = 2 Σ_{k≠0} m_k² d_k² over the complex irreps, with the
        multiplicity m_k = d_k in the regular representation: 2 Σ_{k≠0} d_k⁴ (abelian: 2|G| - 2)."""
        return 2 * sum(irrep.degree**4 for irrep in self.irreps[1:])

    @property
    def description(self) -> str:
        """One line, e.g. "1R×1, 1C×2, 3R×1" for A4: degree, R/C/H for real/complex/quaternionic,
        and how many complex irreps of that kind (a conjugate pair counts 2)."""
        counts = Counter((irrep.degree, irrep.kind) for irrep in self.irreps)
        return ", ".join(f"{d}{LETTERS[kind]}×{n}" for (d, kind), n in counts.items())


def facts(characters: CharacterTable) -> IrrepFacts:
    """The IrrepFacts of a character table."""
    irreps = tuple(
        Irrep(int(d), KINDS[int(nu)], int(d) if nu == 1 else 2 * int(d))
        for d, nu in zip(characters.degrees, characters.indicators, strict=True)
    )
    real = tuple(irrep for i, irrep in enumerate(irreps) if characters.conjugates[i] >= i)
    return IrrepFacts(irreps, real)


def abelian_facts(table: np.ndarray) -> IrrepFacts:
    """The facts of an abelian group in closed form, without its table: its characters form a
    group isomorphic to it, and χ is real iff χ² = 1, so one per solution of g² = e is real."""
    identity, _ = _identity_and_inverses(table)
    real = int((np.diagonal(table) == identity).sum())
    pairs = (len(table) - real) // 2
    one_real, one_complex = Irrep(1, "real", 1), Irrep(1, "complex", 2)
    return IrrepFacts((one_real,) * real + (one_complex,) * 2 * pairs,
                      (one_real,) * real + (one_complex,) * pairs)


def _identity_and_inverses(table: np.ndarray) -> tuple[int, np.ndarray]:
    """In a group the identity is the only idempotent, and a^-1 is where row a holds it."""
    identity = int(np.flatnonzero(np.diagonal(table) == np.arange(len(table)))[0])
    return identity, np.argmax(table == identity, axis=1)


def conjugacy_classes(table: np.ndarray) -> np.ndarray:
    """Class label of each element, labels 0..k-1 numbered by each class's smallest element."""
    _, inverse = _identity_and_inverses(table)
    conjugates = table[table, inverse[:, None]]  # [x, g] = x·g·x^-1
    _, labels = np.unique(conjugates.min(axis=0), return_inverse=True)
    return labels.reshape(-1)


def _abelian_characters(table: np.ndarray, identity: int) -> np.ndarray:
    """Exact characters (irreps, elements) of an abelian group, χ(g) = exp(2πi·e/|G|) with integer
    e (every element's order divides |G|). The characters of the subgroup H reached so far extend
    to <H, g>, where g^m is the first power of g in H: each ψ has m extensions, χ(h·g^t) = ψ(h)·x^t
    for the m roots x of x^m = ψ(g^m)."""
    order = len(table)
    members = np.array([identity])  # the elements of H
    position = np.full(order, -1)  # index of each element of H in members
    position[identity] = 0
    exponents = np.zeros((1, 1), dtype=np.int64)  # (characters of H, members)
    while len(members) < order:
        g = int(np.argmin(position >= 0))
        powers, power = [identity], g
        while position[power] < 0:
            powers.append(power)
            power = table[power, g]
        m = len(powers)  # m | |G|, and m divides ψ(g^m)'s exponent because ψ extends
        roots = exponents[:, position[power]][:, None] // m + order // m * np.arange(m)
        steps = roots[:, :, None, None] * np.arange(m)[:, None]  # (ψ, root, t, 1): t·e(x)
        exponents = ((exponents[:, None, None, :] + steps) % order).reshape(-1, m * len(members))
        members = table[members[None, :], np.array(powers)[:, None]].reshape(-1)  # [t, h] = h·g^t
        position[members] = np.arange(len(members))
    values = np.empty((order, order), dtype=complex)
    values[:, members] = np.exp(2j * np.pi * exponents / order)
    return values


def _burnside(table, classes, identity, inverse, seed: int) -> np.ndarray:
    """Characters (irreps, classes) from the class algebra (see the module docstring)."""
    order = len(table)
    sizes = np.bincount(classes)
    num_classes = len(sizes)
    reps = np.unique(classes, return_index=True)[1]  # one element z_l of each class
    # For z_l and every x, y = x^-1·z_l is the unique partner with x·y = z_l: the product of the
    # class sums C_i·C_j holds z_l #{x ∈ C_i : x^-1·z_l ∈ C_j} times.
    partners = classes[table[inverse[:, None], reps[None, :]]]  # (order, classes)
    cells = (partners * num_classes + np.arange(num_classes)).reshape(-1)
    scale = np.sqrt(sizes)
    rng = np.random.default_rng(seed)

    def hermitian(imaginary: bool) -> np.ndarray:
        """N + N* for N = Σ_i (w_i/|C_i|) M_i in the basis scaled by 1/sqrt(|C|), where N is
        normal; eigenvalue 2 Re Σ_i w_i χ(g_i)/χ(1). Real symmetric for real weights w."""
        weights = rng.standard_normal(num_classes)
        if imaginary:
            weights = weights + 1j * rng.standard_normal(num_classes)
        each = np.repeat((weights / sizes)[classes], num_classes)
        size = num_classes**2
        m = np.bincount(cells, each.real, size) + 1j * np.bincount(cells, each.imag, size)
        n = m.reshape(num_classes, num_classes) * scale / scale[:, None]
        return n + n.conj().T if imaginary else (n + n.T).real

    # A real combination's real symmetric eigh is fast (a complex one can be very slow). Its
    # eigenvalue 2 Re Σ_i w_i χ(g_i)/χ(1) is the same for χ and χ̄ and generically for no other
    # pair (Re χ = Re ψ makes χ + χ̄ = ψ + ψ̄): a double eigenvalue with real eigenvectors a, b
    # belongs to χ, χ̄ = (a ± ib)/√2, since a real basis of span{u, ū} holds Re u and Im u rotated.
    eigenvalues, real_vectors = np.linalg.eigh(hermitian(imaginary=False))
    width = PAIRING * max(np.abs(eigenvalues).max(), 1.0)
    pairs = np.flatnonzero(np.diff(eigenvalues) <= width)  # eigenvalue i equals i + 1
    if (np.diff(pairs) == 1).any():
        raise CharacterTableError(f"three equal eigenvalues (order {order})")
    vectors = real_vectors.astype(complex)  # columns u with u_c ∝ χ(g_c)·sqrt(|C_c|/|G|)
    vectors[:, pairs] = (real_vectors[:, pairs] + 1j * real_vectors[:, pairs + 1]) / np.sqrt(2)
    vectors[:, pairs + 1] = vectors[:, pairs].conj()
    images = hermitian(imaginary=True) @ vectors  # each column an eigenvector of a fresh one too
    eigenvalues = np.einsum("ck,ck->k", vectors.conj(), images)
    bound = TOLERANCE * max(np.abs(eigenvalues).max(), 1.0)
    if not np.abs(images - vectors * eigenvalues).max() < bound:
        raise CharacterTableError(f"class-algebra eigenvectors not common (order {order})")
    head = vectors[classes[identity]]  # |head| = χ(1)/sqrt(|G|); its phase is arbitrary
    return (vectors * np.sqrt(order / sizes)[:, None] * (head.conj() / np.abs(head))).T


def _complete(table, classes, values, identity) -> CharacterTable:
    """Degrees, indicators and conjugates of the raw characters; checked, then in table order."""
    order = len(table)
    sizes = np.bincount(classes)
    reps = np.unique(classes, return_index=True)[1]
    degrees = values[:, classes[identity]]
    indicators = values[:, classes[table[reps, reps]]] @ sizes / order  # g² per class
    probe = np.random.default_rng(0).standard_normal(len(sizes))  # χ̄ by its values on a mix
    conjugates = np.argmin(np.abs((values.conj() @ probe)[:, None] - values @ probe), axis=1)
    rounded = np.rint(degrees.real).astype(int)
    nu = np.rint(indicators.real).astype(int)
    normalised = np.sqrt(np.outer(sizes, sizes)) / order
    identity_matrix = np.eye(len(sizes))
    errors = {
        "integral degrees": np.abs(degrees - rounded).max(),
        "integral indicators": np.abs(indicators - nu).max(),
        "row orthogonality": np.abs((values * sizes) @ values.conj().T / order
                                    - identity_matrix).max(),
        "column orthogonality": np.abs(values.conj().T @ values * normalised
                                       - identity_matrix).max(),
        "conjugates among the rows": np.abs(values[conjugates] - values.conj()).max(),
    }
    for what, error in errors.items():
        if not error < TOLERANCE:  # also catches NaN
            raise CharacterTableError(f"{what} fails by {error:.1e} (order {order})")
    trivial = np.abs(values - 1).max(axis=1) < TOLERANCE
    if not (
        (rounded**2).sum() == order and (rounded >= 1).all() and (order % rounded == 0).all()
        and set(nu) <= set(KINDS) and ((nu == 0) == (conjugates != np.arange(len(nu)))).all()
        and np.array_equal(conjugates[conjugates], np.arange(len(nu))) and trivial.sum() == 1
    ):
        raise CharacterTableError(f"degrees {rounded}, indicators {nu} (order {order})")
    pair = np.minimum(np.arange(len(nu)), conjugates)
    rows = np.lexsort((pair, 1 - nu, rounded, ~trivial))  # last key first
    where = np.argsort(rows)
    return CharacterTable(values[rows], classes, sizes, rounded[rows], nu[rows],
                          where[conjugates[rows]])


def character_table(table: np.ndarray) -> CharacterTable:
    """The checked complex character table of the group with this (checked) Cayley table."""
    table = np.asarray(table)
    identity, inverse = _identity_and_inverses(table)
    if np.array_equal(table, table.T):
        values = _abelian_characters(table, identity)
        return _complete(table, np.arange(len(table)), values, identity)
    classes = conjugacy_classes(table)
    for seed in range(ATTEMPTS):
        try:
            values = _burnside(table, classes, identity, inverse, seed)
            return _complete(table, classes, values, identity)
        except CharacterTableError as err:
            error = err
    raise error
