"""A report table: columns (optionally grouped under a heading), rows of display strings, notes.

Rows have a kind: "measured", "baseline" (the dense reference, full (sdpa)) or "reported" (a
figure published in the poster, never measured here). The HTML template styles each kind;
``to_markdown`` marks reported rows in italics with a "(reported)" tag. A cell may hold several
lines ("\n"): Markdown joins them with <br>, the HTML stacks them.
"""

import dataclasses
import re

import pandas as pd
from tabulate import tabulate

ROW_KINDS = ("measured", "baseline", "reported")
REPORTED_TAG = "(reported)"
BASELINE_TAG = "(baseline)"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    group: str = ""  # a heading over several columns, e.g. "paper · cpu"
    numeric: bool = False


@dataclasses.dataclass
class Row:
    cells: list[str]
    kind: str = "measured"

    def __post_init__(self):
        if self.kind not in ROW_KINDS:
            raise ValueError(f"row kind must be one of {ROW_KINDS}, got {self.kind!r}")


@dataclasses.dataclass
class Table:
    key: str  # the HTML id
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)
    env_ids: list[str] = dataclasses.field(default_factory=list)
    empty: str = "No records."  # shown instead of the table when there are no rows
    short: str = ""  # a short name for cross-references (defaults to the title)
    collapsed: bool = False  # shown folded (<details>) because it is long supporting detail
    legend: list[str] = dataclasses.field(default_factory=list)  # per-column sources, above notes

    @classmethod
    def from_frame(cls, key, title, frame: pd.DataFrame, columns, kinds=None, **fields):
        """A table from a DataFrame of display strings whose columns are in ``columns`` order."""
        kinds = list(kinds) if kinds is not None else ["measured"] * len(frame)
        rows = [
            Row([str(cell) for cell in values], kind)
            for values, kind in zip(frame.itertuples(index=False), kinds, strict=True)
        ]
        return cls(key, title, list(columns), rows, **fields)

    @property
    def name(self) -> str:
        return self.short or self.title

    def header_groups(self) -> list[tuple[str, int]]:
        """Consecutive columns sharing a group, as (group, span) for a two-row HTML header."""
        groups: list[tuple[str, int]] = []
        for column in self.columns:
            if groups and groups[-1][0] == column.group:
                groups[-1] = (column.group, groups[-1][1] + 1)
            else:
                groups.append((column.group, 1))
        return groups

    def has_groups(self) -> bool:
        return any(column.group for column in self.columns)

    def to_markdown(self) -> str:
        """A pipe table; group headings go into the column names as "name [group]"."""
        headers = [
            markdown_escape(f"{c.name} [{c.group}]" if c.group else c.name) for c in self.columns
        ]
        body = [markdown_row(row) for row in self.rows]
        align = ["right" if c.numeric else "left" for c in self.columns]
        return tabulate(
            body, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align
        )


def markdown_escape(text: str) -> str:
    """Escape what Markdown would otherwise read as markup inside a table cell."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    text = re.sub(r"([*_`\[\]])", r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br>")


def markdown_row(row: Row) -> list[str]:
    """A row's cells for Markdown; reported rows italic and tagged, baseline rows tagged."""
    cells = [markdown_escape(cell) for cell in row.cells]
    if row.kind == "reported":
        cells[0] = f"{cells[0]} {REPORTED_TAG}"
        return [f"*{cell}*" if cell else cell for cell in cells]
    if row.kind == "baseline":
        cells[0] = f"{cells[0]} {BASELINE_TAG}"
    return cells
