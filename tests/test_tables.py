import math

import numpy as np

from analysis.tables import TeX, fmt, fmt_ci, latex_table, markdown_table, tex_escape


def test_fmt_missing_values_render_as_dash():
    for v in (None, float("nan"), math.inf, -math.inf, np.float32("nan"), np.nan):
        assert fmt(v) == "–"
    assert fmt(0.123456) == "0.123"
    assert fmt(1234.5, ".2e") == "1.23e+03"
    assert fmt(3) == "3" and fmt("acc", "") == "acc"
    assert fmt_ci(0.5, 0.25, float("nan"), ".2f") == "0.50 [0.25, –]"


def test_tex_escape():
    assert tex_escape("loss_split 5% A&B #1") == r"loss\_split 5\% A\&B \#1"
    assert tex_escape("$x$ {y} a\\b") == r"\$x\$ \{y\} a\textbackslash{}b"
    assert tex_escape("–") == "--" and tex_escape("×10") == r"$\times$10"
    assert tex_escape(TeX(r"$\alpha_N$")) == r"$\alpha_N$"
    assert tex_escape(0.5) == "0.5"


def test_markdown_table_layout():
    md = markdown_table(["a", "b"], [[1, "x"], ["|", None]])
    assert md == "| a | b |\n| --- | --- |\n| 1 | x |\n| \\| | None |\n"


def test_latex_table_booktabs():
    tex = latex_table(
        ["param_count", "value"],
        [["a_b", fmt(float("nan"))], [TeX(r"$\beta$"), "0.5"]],
        caption="fit 95% & more",
        label="tab:fit",
    )
    lines = tex.splitlines()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert lines.count(rule) == 1, rule
    i = lines.index
    assert i(r"\toprule") < i(r"\midrule") < i(r"\bottomrule") < i(r"\end{tabular}")
    assert r"\begin{tabular}{lr}" in lines
    assert r"param\_count & value \\" in lines
    assert r"a\_b & -- \\" in lines and r"$\beta$ & 0.5 \\" in lines
    assert r"\caption{fit 95\% \& more}" in lines and r"\label{tab:fit}" in lines
    assert tex.endswith("\\end{table}\n")
    small = latex_table(["a", "b", "c"], [], align="llr", placement="ht", size="scriptsize")
    assert r"\begin{tabular}{llr}" in small and r"\begin{table}[ht]" in small
    assert "\\centering\\scriptsize" in small and r"\caption" not in small
