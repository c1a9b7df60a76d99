"""Tables for reports: number formatting, Markdown tables and booktabs LaTeX tables.

Missing values (None, NaN, ±inf) render as "–" everywhere. LaTeX cells are escaped unless
wrapped in `TeX` (text that is LaTeX already, e.g. r"$\\alpha$").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["TeX", "fmt", "fmt_ci", "json_safe", "latex_table", "markdown_table", "tex_escape"]

MISSING = "–"
# One character at a time, so that no escape is escaped again.
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "×": r"$\times$",
    MISSING: "--",
}


class TeX(str):
    """A cell or caption that is LaTeX already: latex_table passes it through unescaped."""


def fmt(v, spec: str = ".3g") -> str:
    """format(v, spec), or "–" for None, NaN and ±inf."""
    if v is None or (isinstance(v, numbers.Real) and not math.isfinite(v)):
        return MISSING
    return format(v, spec)


def fmt_ci(v, lo, hi, spec: str = ".3g") -> str:
    """'v [lo, hi]', each formatted with fmt."""
    return f"{fmt(v, spec)} [{fmt(lo, spec)}, {fmt(hi, spec)}]"


def tex_escape(s) -> str:
    """str(s) with LaTeX's special characters escaped ("–" becomes "--", "×" $\\times$);
    a TeX value is returned as is."""
    if isinstance(s, TeX):
        return str(s)
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(s))


def markdown_table(header: Sequence, rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table ('| a | b |', '| --- | --- |', one line a row), newline-ended.
    Cells are str()-ed; a '|' inside a cell is escaped."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in lines) + "\n"


def _md_cell(c) -> str:
    return str(c).replace("|", r"\|")


def latex_table(
    header: Sequence,
    rows: Sequence[Sequence],
    caption: str | None = None,
    label: str | None = None,
    *,
    align: str | None = None,
    placement: str = "t",
    size: str | None = None,
) -> str:
    """A booktabs table environment (\\toprule, \\midrule, \\bottomrule), newline-ended.

    Cells, header and caption are escaped with tex_escape (wrap LaTeX in TeX). align: the
    tabular column spec (default: first column l, the others r); size: e.g. "scriptsize".
    The caption (and label) stand above the tabular.
    """
    align = align or "l" + "r" * (len(header) - 1)
    out = [
        "% requires \\usepackage{booktabs}",
        f"\\begin{{table}}[{placement}]",
        "\\centering" + (f"\\{size}" if size else ""),
    ]
    if caption is not None:
        out.append(f"\\caption{{{tex_escape(caption)}}}")
    if label is not None:
        out.append(f"\\label{{{label}}}")
    out += [
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        _tex_row(header),
        "\\midrule",
        *(_tex_row(r) for r in rows),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ]
    return "\n".join(out) + "\n"


def _tex_row(cells) -> str:
    return " & ".join(map(tex_escape, cells)) + " \\\\"


def json_safe(v):
    """NaN/inf -> None so that fits.json is strict JSON; numpy scalars -> Python numbers."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_safe(v.tolist())
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v
