"""Markdown helpers of the report and the analyses' sections: tables and intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _blank(column: pd.Series) -> bool:
    return bool(column.isna().all() or (column.astype(str) == "").all())


def markdown_table(frame: pd.DataFrame, columns: dict[str, str],
                   intervals: tuple[str, ...] = ()) -> str:
    """A Markdown table of ``frame``'s columns (source name → header); columns that are absent
    or blank in every row (no condition varies, no notes) are left out. A column named in
    ``intervals`` shows as "value [lo, hi]" from its ``<name>_lo`` and ``<name>_hi`` columns."""
    frame = frame.assign(**{name: interval_column(frame, name, f"{name}_lo", f"{name}_hi")
                            for name in intervals})
    present = {c: header for c, header in columns.items() if c in frame and not _blank(frame[c])}
    if frame.empty or not present:
        return "_(no rows)_"
    lines = ["| " + " | ".join(present.values()) + " |", "|" + "---|" * len(present)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |"
              for row in frame[list(present)].itertuples(index=False)]
    return "\n".join(lines)


def interval_column(frame: pd.DataFrame, value: str, lo: str, hi: str) -> pd.Series:
    return pd.Series([f"{v:.4g} [{a:.4g}, {b:.4g}]" if np.isfinite(v) else "—"
                      for v, a, b in zip(frame[value], frame[lo], frame[hi], strict=True)],
                     index=frame.index, dtype=object)

