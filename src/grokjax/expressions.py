"""Operation tables of polynomial expressions mod M (``expr:x**2+x*y+y**2 mod 23``): tasks that
are not groups. The expression is parsed with ``ast`` and walked through a whitelist, never
evaluated as Python."""

from __future__ import annotations

import ast
import operator

import numpy as np

from grokjax.errors import GroupError

MAX_EXPONENT = 16
MAX_EXPRESSION_CHARS = 256

_BINARY_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _evaluate(node: ast.AST, x: np.ndarray, y: np.ndarray, modulus: int):
    """Value of an allowed expression node mod ``modulus``; GroupError for anything else."""
    if isinstance(node, ast.Name) and node.id in ("x", "y"):
        return x if node.id == "x" else y
    if isinstance(node, ast.Constant) and type(node.value) is int:  # not bool, float, str
        return node.value % modulus
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, x, y, modulus) % modulus
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        exponent = node.right
        if not (
            isinstance(exponent, ast.Constant)
            and type(exponent.value) is int
            and 0 <= exponent.value <= MAX_EXPONENT
        ):
            raise GroupError(
                f"exponent {ast.unparse(exponent)!r} must be an integer 0..{MAX_EXPONENT}"
            )
        base, power = _evaluate(node.left, x, y, modulus), 1
        for _ in range(exponent.value):  # reduce each step so int64 never overflows
            power = power * base % modulus
        return power
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left = _evaluate(node.left, x, y, modulus)
        right = _evaluate(node.right, x, y, modulus)
        return _BINARY_OPS[type(node.op)](left, right) % modulus
    raise GroupError(
        f"{ast.unparse(node)!r} is not allowed: use x, y, integers, + - * ( ) and ** with a "
        f"constant exponent 0..{MAX_EXPONENT}"
    )


def expression_table(expression: str, modulus: int) -> np.ndarray:
    """table[x, y] = expression(x, y) mod modulus, from a whitelist walk of its syntax tree."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise GroupError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise GroupError(f"cannot parse expression {expression!r}: {err.msg}") from None
    elements = np.arange(modulus, dtype=np.int64)
    values = _evaluate(tree.body, elements[:, None], elements[None, :], modulus)
    return np.broadcast_to(values, (modulus, modulus)).astype(np.int32)
