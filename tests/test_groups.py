"""Group families: axioms, irrep degrees, spec parsing and the expression whitelist.

Character tables and irrep types: test_irreps.py."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from grokjax import groups
from grokjax.groups import GroupError, check_group, parse_group
from grokjax.spec import load as load_sweep

SMALL_GROUPS = [
    "23", "2x3x4", "mul5", "mul23", "mul97", "dihedral6", "dihedral14", "dihedral128",
    "dicyclic8", "dicyclic12", "dicyclic40", "semidirect:7:3:2", "semidirect:9:6:8",
    "semidirect:13:4:5", "S3", "S4", "S5", "A3", "A4", "A5", "SL2:2", "SL2:3", "SL2:5",
    "S4x3", "dicyclic8x3", "A4x2x2", "S3xdihedral8",
]  # orders <= 128: the helpers below check them by brute force


def nonabelian_dk2_groups(max_order: int = 128) -> list[str]:
    """One non-abelian group with largest irrep degree 2 per available order <= max_order.

    Irrep degrees divide |G| and a non-abelian group has an irrep of degree >= 2, so odd orders
    have none, and groups of order < 6 are abelian; the dihedral group of order N has largest
    degree 2 for every even N >= 6. So the dihedral groups already cover every possible order."""
    return [f"dihedral{order}" for order in range(6, max_order + 1, 2)]


def identity_index(table: np.ndarray) -> int:
    elements = np.arange(len(table))
    (candidates,) = np.nonzero((table == elements).all(axis=1) & (table.T == elements).all(axis=1))
    assert len(candidates) == 1
    return int(candidates[0])


def assert_group_axioms(table: np.ndarray) -> None:
    """Brute force, independent of groups.check_group."""
    order = len(table)
    assert table.shape == (order, order) and table.dtype == np.int32
    assert table.min() >= 0 and table.max() < order
    e = identity_index(table)
    assert all((row == e).sum() == 1 for row in table)  # exactly one right inverse ...
    assert all((col == e).sum() == 1 for col in table.T)  # ... and one left inverse each
    for a in range(order):  # (a·b)·c == a·(b·c) for every b, c
        np.testing.assert_array_equal(table[table[a]], table[a][table])


def class_count(table: np.ndarray) -> int:
    order = len(table)
    e = identity_index(table)
    inverse = [int(np.flatnonzero(table[a] == e)[0]) for a in range(order)]
    classes = {frozenset(int(table[table[x, g], inverse[x]]) for x in range(order))
               for g in range(order)}
    return len(classes)


def element_orders(table: np.ndarray) -> Counter:
    """How many elements have each order."""
    e = identity_index(table)
    elements = np.arange(len(table))
    power, orders = elements.copy(), np.zeros(len(table), dtype=int)
    for k in range(1, len(table) + 1):
        orders[(power == e) & (orders == 0)] = k
        power = table[power, elements]
    return Counter(orders.tolist())


def broken_cyclic(order: int) -> np.ndarray:
    """Z_order with a·1 and a·2 swapped in row 1: identity and inverses survive, associativity
    does not ((1·2)·1 = 3 but 1·(2·1) = 4)."""
    table = (np.arange(order)[:, None] + np.arange(order)[None, :]) % order
    table[1, [1, 2]] = table[1, [2, 1]]
    return table.astype(np.int32)


@pytest.mark.parametrize("spec", SMALL_GROUPS)
def test_every_family_satisfies_the_group_axioms(spec):
    group = parse_group(spec)
    assert group.is_group and group.order == len(group.table)
    assert_group_axioms(group.table)
    np.testing.assert_array_equal(np.sort(group.enumeration), np.arange(group.order))
    assert group.abelian == bool((group.table == group.table.T).all())


@pytest.mark.parametrize("spec", SMALL_GROUPS)
def test_irrep_degrees_square_sum_to_order_one_per_class(spec):
    group = parse_group(spec)
    assert sum(d * d for d in group.irrep_degrees) == group.order
    assert len(group.irrep_degrees) == class_count(group.table)
    assert (group.max_irrep_degree == 1) == group.abelian


@pytest.mark.parametrize(
    "spec, degrees",
    [
        ("S3", [1, 1, 2]),
        ("S4", [1, 1, 2, 3, 3]),
        ("S5", [1, 1, 4, 4, 5, 5, 6]),
        ("S6", [1, 1, 5, 5, 5, 5, 9, 9, 10, 10, 16]),  # order 720: Light's associativity test
        ("A3", [1, 1, 1]),
        ("A4", [1, 1, 1, 3]),
        ("A5", [1, 3, 3, 4, 5]),
        ("dicyclic8", [1, 1, 1, 1, 2]),  # Q_8
        ("dicyclic12", [1, 1, 1, 1, 2, 2]),
        ("semidirect:7:3:2", [1, 1, 1, 3, 3]),  # the Frobenius group of order 21
        ("semidirect:31:5:2", [1] * 5 + [5] * 6),  # order 155, largest degree = ord(2 mod 31)
        ("semidirect:5:4:2", [1, 1, 1, 1, 4]),  # the Frobenius group F_20
        ("semidirect:13:4:5", [1] * 4 + [4] * 3),  # the Frobenius group of order 52
        ("semidirect:7:6:3", [1] * 6 + [6]),  # AGL(1, 7), the Frobenius group F_42
        ("dihedral24", [1] * 4 + [2] * 5),
        ("SL2:3", [1, 1, 1, 2, 2, 2, 3]),  # the binary tetrahedral group
        ("SL2:5", [1, 2, 2, 3, 3, 4, 4, 5, 6]),  # the binary icosahedral group
        ("SL2:7", [1, 3, 3, 4, 4, 6, 6, 6, 7, 8, 8]),
        ("S3x2", [1, 1, 1, 1, 2, 2]),  # degrees of a product: every d_G·d_H
        ("S4xA4", sorted(a * b for a in [1, 1, 2, 3, 3] for b in [1, 1, 1, 3])),
    ],
)
def test_known_irrep_degrees(spec, degrees):
    assert list(parse_group(spec).irrep_degrees) == degrees


@pytest.mark.parametrize("order", [6, 8, 10, 12, 18, 30, 64, 400])
def test_dihedral_degrees(order):
    n = order // 2
    linear = 2 if n % 2 else 4
    group = parse_group(f"dihedral{order}")
    assert list(group.irrep_degrees) == [1] * linear + [2] * ((order - linear) // 4)
    assert group.max_irrep_degree == 2 and not group.abelian


@pytest.mark.parametrize(
    "spec, profile",
    [
        ("dihedral14", {1: 1, 2: 7, 7: 6}),
        ("dihedral12", {1: 1, 2: 7, 3: 2, 6: 2}),
        ("dicyclic8", {1: 1, 2: 1, 4: 6}),
        ("dicyclic12", {1: 1, 2: 1, 3: 2, 4: 6, 6: 2}),
        ("semidirect:7:3:2", {1: 1, 3: 14, 7: 6}),
        ("S4", {1: 1, 2: 9, 3: 8, 4: 6}),
        ("A5", {1: 1, 2: 15, 3: 20, 5: 24}),
        ("SL2:3", {1: 1, 2: 1, 3: 8, 4: 6, 6: 8}),
        ("SL2:5", {1: 1, 2: 1, 3: 20, 4: 30, 5: 24, 6: 20, 10: 24}),
        ("S3x3", {1: 1, 2: 3, 3: 8, 6: 6}),
    ],
)
def test_element_order_profiles_identify_the_group(spec, profile):
    assert element_orders(parse_group(spec).table) == Counter(profile)


def test_nonabelian_degree_two_sweep_covers_many_orders():
    specs = nonabelian_dk2_groups()
    orders = [parse_group(spec).order for spec in specs]
    assert orders == sorted(set(orders)) and max(orders) <= 128 and len(orders) >= 15
    for spec in specs:
        group = parse_group(spec)
        assert group.max_irrep_degree == 2 and not group.abelian, spec
    assert [parse_group(s).order for s in nonabelian_dk2_groups(20)] == [6, 8, 10, 12, 14, 16,
                                                                         18, 20]


@pytest.mark.parametrize("p", [3, 5, 23, 97])
def test_multiplicative_group_is_cyclic_of_order_p_minus_1(p):
    group = parse_group(f"mul{p}")
    assert group.order == p - 1 and group.abelian
    residues = np.arange(1, p)
    np.testing.assert_array_equal(group.table + 1, np.outer(residues, residues) % p)
    assert identity_index(group.table) == 0  # residue 1
    assert element_orders(group.table)[p - 1] > 0  # a generator exists: cyclic


def test_expression_table_values():
    group = parse_group("expr:x**2+x*y+y**2 mod 23")
    x, y = np.meshgrid(np.arange(23), np.arange(23), indexing="ij")
    np.testing.assert_array_equal(group.table, (x**2 + x * y + y**2) % 23)
    assert group.table[3, 5] == 3  # 9 + 15 + 25 = 49 = 2·23 + 3
    assert not group.is_group and group.irrep_degrees == () and group.max_irrep_degree == 0
    assert group.abelian  # commutative
    assert group.order == 23 and group.table.dtype == np.int32


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("expr:x - y mod 7", lambda x, y: (x - y) % 7),
        ("expr:(x+y)mod5", lambda x, y: (x + y) % 5),
        ("expr:-x*3 + 10**0 + y**0 mod 11", lambda x, y: (-3 * x + 2) % 11),
        ("expr: x**16 - (y - 2)**3 mod 13", lambda x, y: (x**16 - (y - 2) ** 3) % 13),
        ("expr:123456789 mod 97", lambda x, y: np.full_like(x, 123456789 % 97)),
    ],
)
def test_expression_arithmetic(spec, expected):
    table = parse_group(spec).table
    x, y = np.meshgrid(np.arange(len(table)), np.arange(len(table)), indexing="ij")
    np.testing.assert_array_equal(table, expected(x, y))


@pytest.mark.parametrize(
    "body",
    [
        "__import__('os')", "__import__('os').system('false')", "x.real", "abs(x)", "z",
        "X", "os", "x**y", "x**17", "x**-1", "x/y", "x//y", "x%y", "x<<1", "1.5", "True",
        "'a'", "x if y else 1", "[x]", "x[0]", "lambda: x", "x==y", "(x", "x; y", "~x",
    ],
)
def test_expression_parser_rejects_everything_outside_the_whitelist(body):
    with pytest.raises(GroupError, match="accepted forms"):
        parse_group(f"expr:{body} mod 7")


@pytest.mark.parametrize(
    "spec",
    [
        "", "foo", "D7", "dihedral7", "dihedral4", "dihedral4096", "dicyclic10", "dicyclic4",
        "mul22", "mul2", "S2", "S7", "A7", "semidirect:7:3:3", "semidirect:7:3:1",
        "semidirect:7:3", "semidirect:2:2:1", "1x3", "23x", "expr:x+y", "expr:x+y mod 1",
        "expr:x+y mod 0", "SL2:4", "SL2:13", "SL2:1", "SL23", "S7x3", "S4x", "x3", "S4xxS4",
        "S4xS6", "2X3", "S4xfoo", "dihedral6x1",
    ],
)
def test_bad_specs_raise_with_the_accepted_forms(spec):
    with pytest.raises(GroupError) as err:
        parse_group(spec)
    for syntax, _, example in groups.GROUP_FAMILIES:
        assert syntax in str(err.value) and repr(example) in str(err.value)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("S7x3", "group 'S7x3': factor 'S7': SN needs 3 <= N <= 6, got 7;"),
        ("S4x1", "group 'S4x1': factor '1': a cyclic group needs order >= 2, got 1;"),
        ("S4xS6", "group 'S4xS6': order 17280 is above the limit 2048;"),
        ("SL2:13", "SL2:P needs a prime P with P(P²-1) <= 2048 (P = 2, 3, 5, 7 or 11), got 13"),
    ],
)
def test_new_forms_say_what_is_wrong(spec, problem):
    with pytest.raises(GroupError, match="accepted forms") as err:
        parse_group(spec)
    assert problem in str(err.value)


def test_every_documented_example_parses():
    for syntax, _, example in groups.GROUP_FAMILIES:
        assert parse_group(example).order >= 2, syntax


CYCLIC6 = (np.arange(6)[:, None] + np.arange(6)[None, :]) % 6
BROKEN_TABLES = {
    "non-square": CYCLIC6[:5],
    "out of range": np.where(CYCLIC6 == 5, 6, CYCLIC6),
    "subtraction": (np.arange(6)[:, None] - np.arange(6)[None, :]) % 6,  # no left identity
    "max": np.maximum.outer(np.arange(6), np.arange(6)),  # identity 0, no inverses
    "non-associative": broken_cyclic(6),
}


@pytest.mark.parametrize("full_check_max_order", [128, 0])  # brute force, then Light's test
def test_check_group_accepts_groups_and_rejects_broken_tables(monkeypatch, full_check_max_order):
    monkeypatch.setattr(groups, "FULL_ASSOCIATIVITY_MAX_ORDER", full_check_max_order)
    for spec in ["dihedral14", "S4", "A5", "dicyclic12", "2x2x2", "semidirect:9:6:8", "mul23"]:
        check_group(parse_group(spec).table)
    for what, table in BROKEN_TABLES.items():
        with pytest.raises(GroupError):
            check_group(table)
            pytest.fail(f"accepted the {what} table")


def test_light_test_catches_non_associative_tables_above_the_brute_force_limit():
    check_group(parse_group("dihedral400").table)
    with pytest.raises(GroupError, match="not associative"):
        check_group(broken_cyclic(200))


def test_cyclic_specs_unchanged():
    z23 = parse_group("23")
    assert z23.name == "Z_23" and z23.spec == "23" and z23.abelian
    np.testing.assert_array_equal(z23.table, (np.arange(23)[:, None] + np.arange(23)) % 23)
    np.testing.assert_array_equal(z23.enumeration, np.arange(23))
    assert z23.irrep_degrees == (1,) * 23 and z23.is_group

    product = parse_group("2 x 3 x 4")
    assert product.spec == "2x3x4" and product.name == "Z_2 x Z_3 x Z_4" and product.order == 24
    np.testing.assert_array_equal(product.enumeration[:5], [0, 6, 12, 18, 2])
    components = [(a, b, c) for a in range(2) for b in range(3) for c in range(4)]
    np.testing.assert_array_equal(
        product.enumeration, [a + 2 * b + 6 * c for a, b, c in components]
    )
    for (i, u), (j, v) in itertools.product(enumerate(components), repeat=2):
        total = [(s + t) % o for s, t, o in zip(u, v, (2, 3, 4), strict=True)]
        assert product.table[product.enumeration[i], product.enumeration[j]] == (
            total[0] + 2 * total[1] + 6 * total[2]
        )


def test_group_keeps_its_positional_construction_and_cache():
    table = np.zeros((1, 1), dtype=np.int32)
    group = groups.Group("1", "trivial", 1, table, np.zeros(1, np.int32), True)
    assert group.is_group and group.max_irrep_degree == 1 and group.irrep_degrees == (1,)
    assert parse_group("dihedral14") is parse_group("dihedral14")
    assert parse_group("s4").irrep_degrees == parse_group("S4").irrep_degrees


def test_the_irrep_sweep_separates_complex_degree_from_real_dimension():
    """sweeps/irrep.toml (CPU scale): groups of similar order, at a width K at or above every
    group's Theorem 3 width, whose largest irreps separate d_k from d_R: pairs with the same
    complex degrees and other real dimensions, and d_R from 2 to 6."""
    sweep = load_sweep(Path(__file__).parents[1] / "sweeps" / "irrep.toml")
    groups = {group: parse_group(group) for grid in sweep.grids for group in grid["group"]}
    facts = {name: group.irrep_facts for name, group in groups.items()}
    assert all(18 <= group.order <= 24 for group in groups.values())
    assert max(f.theorem3_width for f in facts.values()) <= sweep.fixed["K"]
    for order in (20, 24):  # same complex degrees, real vs quaternionic irreps
        dihedral, dicyclic = facts[f"dihedral{order}"], facts[f"dicyclic{order}"]
        assert groups[f"dihedral{order}"].irrep_degrees == groups[f"dicyclic{order}"].irrep_degrees
        assert (dihedral.max_real_dim, dicyclic.max_real_dim) == (2, 4)
    assert {f.max_real_dim for f in facts.values()} == {2, 3, 4, 6}
    assert {f.max_degree for f in facts.values()} == {1, 2, 3}


def test_special_linear_group_is_the_matrices_of_determinant_one():
    p = 5
    group = parse_group("sl2:5")
    # numbered by the entries of A - I mod p read as base-p digits: the identity first
    shifted = [np.reshape(digits, (2, 2)) for digits in itertools.product(range(p), repeat=4)]
    matrices = [m for m in ((s + np.eye(2, dtype=int)) % p for s in shifted)
                if (m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) % p == 1]
    assert group.order == len(matrices) == 120 and group.name.startswith("SL(2,5)")
    np.testing.assert_array_equal(matrices[0], np.eye(2))
    for a, b in itertools.product(range(0, 120, 7), repeat=2):
        np.testing.assert_array_equal(matrices[group.table[a, b]], matrices[a] @ matrices[b] % p)


def test_direct_product_numbering_and_enumeration():
    """Element i + |G|·j of G x H is (g_i, h_j); the enumeration is G's outermost."""
    product, s4, z3 = parse_group("S4 x 3"), parse_group("S4"), parse_group("3")
    assert product.spec == "S4x3" and product.order == 72 and not product.abelian
    assert product.name == "(S_4 (symmetric group on 4 points)) x Z_3"
    for (a, u), (b, v) in itertools.product(itertools.product(range(24), range(3)), repeat=2):
        assert product.table[a + 24 * u, b + 24 * v] == s4.table[a, b] + 24 * z3.table[u, v]
    np.testing.assert_array_equal(product.enumeration,
                                  [a + 24 * u for a in range(24) for u in range(3)])
    assert parse_group("3x2xS3").abelian is False and parse_group("mul7x2").abelian


def test_cyclic_products_through_the_general_product_are_unchanged():
    """The paper's Z_N1 x Z_N2 x ...: mixed radix, factor 0 least significant, enumerated with
    component 0 outermost (the same formula as before direct products of any groups existed)."""
    for orders in [(2, 3, 4), (4, 4), (7, 2, 2, 3), (2,) * 6, (16, 8)]:
        group = parse_group("x".join(map(str, orders)))
        radix = np.cumprod((1,) + orders[:-1])
        components = (np.arange(group.order)[:, None] // radix) % orders
        expected = ((components[:, None, :] + components[None, :, :]) % orders) @ radix
        np.testing.assert_array_equal(group.table, expected)
        assert group.table.dtype == np.int32 and group.enumeration.dtype == np.int32
        enumeration = [np.dot(c, radix) for c in itertools.product(*map(range, orders))]
        np.testing.assert_array_equal(group.enumeration, enumeration)
        assert group.name == " x ".join(f"Z_{o}" for o in orders) and group.abelian
