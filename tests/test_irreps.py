"""Character tables of every group family: the checks, the Frobenius–Schur types where the
literature knows them, Theorem 3's width, and direct products and SL(2, P)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from grokjax import irreps
from grokjax.groups import GroupError, parse_group

# Every family, abelian and not, with orders up to 240; the direct products mix families.
GROUPS = [
    "2", "7", "12", "2x2x2", "2x3x4", "mul23", "dihedral6", "dihedral14", "dihedral24",
    "dicyclic8", "dicyclic12", "dicyclic16", "dicyclic24", "semidirect:7:3:2",
    "semidirect:7:6:3", "semidirect:5:4:2", "semidirect:13:3:3", "semidirect:13:4:5",
    "semidirect:9:6:8", "S3", "S4", "S5", "A4", "A5", "SL2:2", "SL2:3", "SL2:5", "S4x3",
    "dicyclic8x3", "A4x2", "S3xS3", "dicyclic8xdicyclic8", "SL2:3x2x5", "dicyclic200", "S3x23",
]
SMALL = [spec for spec in GROUPS if spec not in ("dicyclic200", "S3x23", "SL2:3x2x5")]


def kinds(spec: str) -> Counter:
    """(degree, kind) -> number of complex irreps."""
    return Counter((irrep.degree, irrep.kind) for irrep in parse_group(spec).irrep_facts.irreps)


def brute_force_indicators(spec: str) -> np.ndarray:
    """ν(χ) = (1/|G|) Σ_g χ(g²) straight from the table, element by element."""
    group = parse_group(spec)
    table = group.characters
    squares = group.table[np.arange(group.order), np.arange(group.order)]
    return (table.values[:, table.classes[squares]].sum(axis=1) / group.order).real


@pytest.mark.parametrize("spec", GROUPS)
def test_orthogonality_and_degrees(spec):
    group = parse_group(spec)
    table = group.characters
    values, sizes = table.values, table.class_sizes
    order = group.order
    np.testing.assert_array_equal(group.table[0], np.arange(order))  # element 0 is e
    assert sizes.sum() == order and len(values) == len(sizes) == len(set(table.classes))
    np.testing.assert_allclose((values * sizes) @ values.conj().T / order, np.eye(len(sizes)),
                               atol=1e-9)
    np.testing.assert_allclose(values.conj().T @ values, np.diag(order / sizes), atol=1e-9)
    assert (table.degrees**2).sum() == order
    np.testing.assert_allclose(values[:, table.classes[0]], table.degrees)
    np.testing.assert_allclose(values[0], 1)  # the trivial character first
    # a class function: χ(x g x^-1) = χ(g), so conjugate elements share a class
    x = np.arange(order)[:, None]
    inverse = np.argmax(group.table == 0, axis=1)
    conjugated = group.table[group.table[x, np.arange(order)], inverse[x]]
    assert (table.classes[conjugated] == table.classes[None, :]).all()


@pytest.mark.parametrize("spec", GROUPS)
def test_indicators_types_and_conjugates(spec):
    table = parse_group(spec).characters
    np.testing.assert_allclose(brute_force_indicators(spec), table.indicators, atol=1e-9)
    real_valued = np.abs(table.values.imag).max(axis=1) < 1e-9
    assert ((table.indicators != 0) == real_valued).all()  # Frobenius–Schur: ν = 0 iff not real
    np.testing.assert_allclose(table.values[table.conjugates], table.values.conj(), atol=1e-9)
    facts = parse_group(spec).irrep_facts
    count = Counter(irrep.kind for irrep in facts.irreps)
    assert count["complex"] % 2 == 0  # in pairs χ, χ̄
    assert Counter(irrep.kind for irrep in facts.real_irreps) == Counter(
        {**count, "complex": count["complex"] // 2})  # a pair is one real irrep
    for irrep in facts.irreps + facts.real_irreps:
        assert irrep.real_dim == irrep.degree * (1 if irrep.kind == "real" else 2)


@pytest.mark.parametrize("spec", SMALL)
def test_linear_characters_are_homomorphisms(spec):
    """χ(a·b) = χ(a)·χ(b) for every degree-1 character: all of them for abelian groups."""
    group = parse_group(spec)
    table = group.characters
    for row in table.values[table.degrees == 1]:
        chi = row[table.classes]  # per element
        np.testing.assert_allclose(chi[group.table], np.outer(chi, chi), atol=1e-9)


@pytest.mark.parametrize("n", [3, 4, 5, 8, 12, 23, 64])
def test_cyclic_irreps_are_complex_except_the_real_characters(n):
    expected = Counter({(1, "real"): 2 if n % 2 == 0 else 1})
    expected[(1, "complex")] = n - sum(expected.values())
    assert kinds(str(n)) == expected
    assert parse_group(str(n)).irrep_facts.theorem3_width == 2 * n - 2


@pytest.mark.parametrize(
    "spec", ["2x2x2", "2x3x4", "4x4", "mul23", "3x5x7", "2x2x2x2x2x2x2x2x2x2x2", "2x1024"]
)
def test_abelian_closed_form_matches_the_table_and_width_is_2m_minus_2(spec):
    group = parse_group(spec)
    involutions = int((np.diagonal(group.table) == 0).sum())  # g² = e, identity included
    assert kinds(spec) == Counter({(1, "real"): involutions,
                                   (1, "complex"): group.order - involutions})
    assert group.irrep_facts.theorem3_width == 2 * group.order - 2
    if group.order <= 64:
        assert irreps.facts(group.characters) == group.irrep_facts


@pytest.mark.parametrize("spec", ["S3", "S4", "S5", "S6", "SL2:2"])  # SL(2, 2) = S3
def test_symmetric_groups_are_all_real(spec):
    assert all(irrep.kind == "real" for irrep in parse_group(spec).irrep_facts.irreps)


@pytest.mark.parametrize("order", [6, 8, 10, 16, 24, 30, 64])
def test_dihedral_irreps_are_all_real(order):
    facts = parse_group(f"dihedral{order}").irrep_facts
    assert all(irrep.kind == "real" for irrep in facts.irreps)
    assert facts.real_irreps == facts.irreps


@pytest.mark.parametrize("order", [8, 12, 16, 20, 24, 28, 32, 40, 48])
def test_dicyclic_faithful_two_dimensional_irreps_are_quaternionic(order):
    """Dic_n (order 4n) has n - 1 two-dimensional irreps ρ_j, a ↦ diag(ζ^j, ζ^-j) with ζ = e^(iπ/n)
    and x ↦ [[0, (-1)^j], [1, 0]]: quaternionic for odd j (x² = a^n acts as -1), real for even j.
    Its linear characters: 4 real ones for even n; for odd n, 2 real and 2 complex (x ↦ ±i)."""
    n = order // 4
    odd_j, even_j = n // 2, (n - 1) // 2
    linear = {(1, "real"): 4} if n % 2 == 0 else {(1, "real"): 2, (1, "complex"): 2}
    expected = Counter({**linear, (2, "quaternionic"): odd_j})
    if even_j:
        expected[(2, "real")] = even_j
    assert kinds(f"dicyclic{order}") == expected


def test_known_small_groups():
    assert kinds("dicyclic8") == Counter({(1, "real"): 4, (2, "quaternionic"): 1})  # Q_8
    assert kinds("A4") == Counter({(1, "real"): 1, (1, "complex"): 2, (3, "real"): 1})
    assert kinds("semidirect:7:3:2") == Counter({(1, "real"): 1, (1, "complex"): 2,
                                                 (3, "complex"): 2})
    # SL(2,3): the natural 2-dim irrep is quaternionic, its twists by the complex linear
    # characters are complex; the 3-dim one comes from A4 = SL(2,3)/{±1}
    assert kinds("SL2:3") == Counter({(1, "real"): 1, (1, "complex"): 2, (2, "quaternionic"): 1,
                                      (2, "complex"): 2, (3, "real"): 1})
    # SL(2,5), the binary icosahedral group: faithful irreps (2, 2, 4, 6) quaternionic
    assert kinds("SL2:5") == Counter({(1, "real"): 1, (2, "quaternionic"): 2, (3, "real"): 2,
                                      (4, "real"): 1, (4, "quaternionic"): 1, (5, "real"): 1,
                                      (6, "quaternionic"): 1})
    assert kinds("A5") == Counter({(1, "real"): 1, (3, "real"): 2, (4, "real"): 1,
                                   (5, "real"): 1})
    # Z13 ⋊ Z3: the 3-dim irreps are induced from the orbits {k, 3k, 9k} of Z13's characters;
    # -1 is no power of 3 mod 13, so none is real-valued: four complex ones. Z13 ⋊ Z4 (5² = -1):
    # orbits {k, 5k, -k, -5k}, and ν = 1 since (x^i y²)² = e for all 13 i: 13·4/52.
    assert kinds("semidirect:13:3:3") == Counter({(1, "real"): 1, (1, "complex"): 2,
                                                  (3, "complex"): 4})
    assert kinds("semidirect:13:4:5") == Counter({(1, "real"): 2, (1, "complex"): 2,
                                                  (4, "real"): 3})
    # Z7 ⋊ Z6 = AGL(1, 7): Z6's linear characters, and one 6-dim irrep induced from Z7 (real:
    # its character is 6, -1 on Z7 and 0 elsewhere)
    assert kinds("semidirect:7:6:3") == Counter({(1, "real"): 2, (1, "complex"): 4,
                                                 (6, "real"): 1})


@pytest.mark.parametrize(
    "spec, width",
    [
        ("semidirect:5:4:2", 2 * (3 + 4**4)),  # F20: degrees 1, 1, 1, 1, 4 -> 518
        ("semidirect:7:6:3", 2 * (5 + 6**4)),  # F42: 1 x 6, 6 -> 2602
        ("S3", 2 * (1 + 2**4)),
        ("A4", 2 * (2 + 3**4)),
        ("S4", 2 * (1 + 2**4 + 2 * 3**4)),
        ("dicyclic8", 2 * (3 + 2**4)),
    ],
)
def test_theorem3_width(spec, width):
    assert parse_group(spec).irrep_facts.theorem3_width == width


def test_real_dimensions_and_pairs():
    facts = parse_group("semidirect:7:3:2").irrep_facts  # two complex 3-dim irreps, conjugate
    assert facts.max_degree == 3 and facts.max_real_dim == 6
    assert [(irrep.degree, irrep.real_dim) for irrep in facts.real_irreps] == [(1, 1), (1, 2),
                                                                             (3, 6)]
    facts = parse_group("dicyclic8").irrep_facts  # quaternionic: real form of dimension 4
    assert facts.max_degree == 2 and facts.max_real_dim == 4 and len(facts.real_irreps) == 5
    assert parse_group("S4").irrep_facts.max_real_dim == 3


def test_description():
    assert parse_group("A4").irrep_facts.description == "1R×1, 1C×2, 3R×1"
    assert parse_group("dicyclic8").irrep_facts.description == "1R×4, 2H×1"
    assert parse_group("5").irrep_facts.description == "1R×1, 1C×4"


@pytest.mark.parametrize("pair", [("semidirect:13:3:3", "semidirect:13:4:5"),
                                  ("semidirect:7:3:2", "semidirect:7:6:3"),
                                  ("dihedral24", "dicyclic24"), ("S4", "semidirect:7:3:2")])
def test_groups_whose_types_separate_have_different_facts(pair):
    first, second = (parse_group(spec).irrep_facts for spec in pair)
    assert first.irreps != second.irreps


def test_direct_product_characters_are_products():
    """The irreps of G x H are the χ ⊗ ψ: degrees multiply, indicators multiply."""
    for left, right in [("S3", "3"), ("dicyclic8", "dicyclic8"), ("SL2:3", "4"), ("A4", "2")]:
        expected = Counter()
        for (d1, k1), n1 in kinds(left).items():
            for (d2, k2), n2 in kinds(right).items():
                nu = {"real": 1, "complex": 0, "quaternionic": -1}
                kind = {1: "real", 0: "complex", -1: "quaternionic"}[nu[k1] * nu[k2]]
                expected[(d1 * d2, kind)] += n1 * n2
        assert kinds(f"{left}x{right}") == expected, (left, right)


def test_characters_and_facts_are_cached_per_group():
    group = parse_group("S5")
    assert group.characters is group.characters and group.irrep_facts is group.irrep_facts


def test_expression_tables_have_no_characters():
    group = parse_group("expr:x*y mod 7")
    with pytest.raises(GroupError, match="not a group"):
        _ = group.characters
    with pytest.raises(GroupError, match="not a group"):
        _ = group.irrep_facts
    assert group.irrep_degrees == () and group.max_irrep_degree == 0


@pytest.mark.parametrize("step, spec", [("_burnside", "S4"), ("_abelian_characters", "12")])
def test_a_wrong_table_raises_an_internal_error(monkeypatch, step, spec):
    """The checks are live: a step that returns a scaled character is caught."""
    compute = getattr(irreps, step)

    def scrambled(*args):
        values = compute(*args)
        values[1] *= 1.01
        return values

    monkeypatch.setattr(irreps, step, scrambled)
    with pytest.raises(irreps.CharacterTableError, match="fails by"):
        irreps.character_table(parse_group(spec).table)
