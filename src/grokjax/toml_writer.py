"""A validated sweep mapping written back as TOML text (sweeps given as dicts, and overrides).

Written here rather than with tomli_w: tomli_w moves every table-valued key (a range form such as
seed = {range = [1, 21]}) below the scalar keys as a [grid.seed] sub-table, and key order is
meaning here: the order of a grid's axes and of the overrides, hence the runs' order and the
output directory's name, must survive the round trip through ``_sweep.toml``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are valid in TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(mapping: dict[str, dict | list[dict]]) -> str:
    """A validated sweep mapping as TOML: its tables as ``[key]``, lists of tables as
    ``[[key]]``, anything deeper inline."""
    lines = []
    for key, value in mapping.items():
        for table in value if isinstance(value, list) else [value]:
            lines += ["", f"[[{_toml_key(key)}]]" if isinstance(value, list) else
                      f"[{_toml_key(key)}]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines).strip("\n") + "\n"
