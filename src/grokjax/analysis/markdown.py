"""Markdown helpers of the report and the analyses' sections: tables and intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Rows of one table in a report: a search sweep has a condition per train fraction tried, and a
# report is read, not grepped; the whole table is the fit's (grokjax fit, Results.fit()).
MAX_ROWS = 40


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _blank(column: pd.Series) -> bool:
    return bool(column.isna().all() or (column.astype(str) == "").all())


def markdown_table(frame: pd.DataFrame, columns: dict[str, str],
                   intervals: tuple[str, ...] = (), max_rows: int = MAX_ROWS) -> str:
    """A Markdown table of ``frame``'s columns (source name → header); columns that are absent
    or blank in every row (no condition varies, no notes) are left out. A column named in
    ``intervals`` shows as "value [lo, hi]" from its ``<name>_lo`` and ``<name>_hi`` columns.
    Past ``max_rows`` rows, a line says how many more there are and where to find them."""
    frame = frame.assign(**{name: interval_column(frame, name, f"{name}_lo", f"{name}_hi")
                            for name in intervals})
    present = {c: header for c, header in columns.items() if c in frame and not _blank(frame[c])}
    if frame.empty or not present:
        return "_(no rows)_"
    lines = ["| " + " | ".join(present.values()) + " |", "|" + "---|" * len(present)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |"
              for row in frame[list(present)].head(max_rows).itertuples(index=False)]
    if len(frame) > max_rows:
        lines.append(f"\n…and {len(frame) - max_rows} more rows: `grokjax fit DIR` (Python: "
                     "`Results.fit()`) has them all, `--where FIELD=VALUE` narrows the report.")
    return "\n".join(lines)


def interval_column(frame: pd.DataFrame, value: str, lo: str, hi: str) -> pd.Series:
    return pd.Series([f"{v:.4g} [{a:.4g}, {b:.4g}]" if np.isfinite(v) else "—"
                      for v, a, b in zip(frame[value], frame[lo], frame[hi], strict=True)],
                     index=frame.index, dtype=object)

