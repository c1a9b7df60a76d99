"""Which columns a fit reads, where they come from, and the conventions they follow.

One default FLOP convention wherever a project results table is read: `flops_detailed`
(Hoffmann et al. 2022, App. F), with D = `tokens` where the table has it. For any other table
the user names the columns. A fit that needs C or D that is not a column derives it under
C = 6 N D (Kaplan et al. 2020, sec. 2.1), and says so in every output.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pandas as pd

from analysis.inputs import require_columns, require_positive_finite
from scaling.config import ConfigError

DEFAULT_N, DEFAULT_C, DEFAULT_D = "params_non_embedding", "flops_detailed", "tokens"
DEFAULT_LOSS, DEFAULT_RUN, BUDGET_COL = "loss", "run_id", "flops_budget"
DERIVED_C, DERIVED_D = "C (=6ND)", "D (=C/6N)"
FLAGS = {"n": "--n", "d": "--d", "c": "--c", "loss": "--loss", "run": "--run"}
# Human-readable description of each known column, written next to every fit.
CONVENTIONS = {
    "flops_6n": "C = 6 * N_non_embedding * D (Kaplan et al. 2020, sec. 2.1)",
    "flops_detailed": "C = 3 * forward FLOPs incl. attention, embeddings and logits "
    "(Hoffmann et al. 2022, App. F)",
    "params_non_embedding": "N = non-embedding parameters (Kaplan et al. 2020, sec. 2.1)",
}


@contextlib.contextmanager
def as_flag(flag: str, col: str, fix: str | None = None):
    """Re-raise analysis.inputs' errors (field 'input.COL') under the flag's name, "--n 'COL'"."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{flag} {col!r}", e.problem, fix or e.fix) from None


def require(table: pd.DataFrame, flag: str, col: str) -> None:
    with as_flag(flag, col):
        require_columns(table, [col])


@dataclass(frozen=True)
class Columns:
    """The column of each role (None: not used); c and d may name derived columns."""

    n: str | None
    loss: str | None
    c: str | None = None
    d: str | None = None
    run: str | None = None

    @property
    def derived(self) -> set[str]:
        return {r for r, v in (("c", self.c), ("d", self.d)) if v in (DERIVED_C, DERIVED_D)}

    def given(self, role: str) -> str | None:
        """The column of a role as it is in the input (None when derived or unused)."""
        return None if role in self.derived else getattr(self, role)

    def require_positive(self, table: pd.DataFrame) -> None:
        """The input columns hold finite values > 0 (log-space fits)."""
        fix = "drop or correct those rows (e.g. with --filter); log-space fits need values > 0"
        for role in ("n", "d", "c", "loss"):
            if col := self.given(role):
                with as_flag(FLAGS[role], col, fix):
                    require_positive_finite(table, [col])

    def mapping(self) -> dict:
        return {"n": self.n, "d": self.d, "c": self.c, "loss": self.loss}

    def conventions(self) -> dict:
        """How C, D and N were obtained (the *_convention fields of every output)."""
        c, d, n = self.c, self.d, self.n
        if c == DERIVED_C:
            flops = f"C = 6 N D from {n!r} and {d!r} (Kaplan et al. 2020)"
        else:
            flops = CONVENTIONS.get(c, f"C = column {c!r} as given") if c else None
        tokens = f"D = C / (6 N) from {c!r} and {n!r}" if d == DERIVED_D else None
        tokens = tokens or (f"D = column {d!r}" if d else None)
        params = CONVENTIONS.get(n, f"N = column {n!r}") if n else None
        return {"flop_convention": flops, "tokens_convention": tokens, "params_convention": params}


def resolve_columns(
    table: pd.DataFrame, given: dict, roles: set[str], loss: bool = True
) -> Columns:
    """Columns for the roles a fit needs ("n", "d", "c", "loss", "run"), from the user's
    choices `given` (role -> column or None) and the project defaults; C or D that is needed
    but not given is derived (C = 6 N D), which needs N and the other one. The loss is a role
    of every fit but those that read no loss (loss=False: its column is None)."""
    c, d = given.get("c"), given.get("d")
    if c is None and d is None:
        c, d = DEFAULT_C, DEFAULT_D if DEFAULT_D in table.columns else None
    roles = set(roles) | ({"loss"} if loss else set())
    if ("c" in roles and c is None) or ("d" in roles and d is None):
        roles |= {"n", "c", "d"}
    cols = {
        "n": given.get("n") or DEFAULT_N,
        "loss": given.get("loss") or DEFAULT_LOSS,
        "c": c,
        "d": d,
        "run": given.get("run") or (DEFAULT_RUN if DEFAULT_RUN in table.columns else None),
    }
    for role, col in cols.items():
        if role in roles and col is not None:
            require(table, FLAGS[role], col)
    # C and D are kept beyond the roles for the selection (--min-c), where the table has them.
    optional = lambda role: role in ("c", "d") and cols[role] in table.columns
    keep = lambda role: cols[role] if role in roles or optional(role) else None
    return Columns(n=keep("n"), loss=keep("loss"), c=keep("c"), d=keep("d"), run=keep("run"))


def derive_columns(table: pd.DataFrame, cols: Columns, roles: set[str]):
    """Add C = 6 N D or D = C / (6 N) for a needed role that is not a column; (table, cols)."""
    table, c, d = table.copy(), cols.c, cols.d
    # Text becomes NaN here; the positivity check names the row it came from.
    number = lambda col: pd.to_numeric(table[col], errors="coerce")  # noqa: E731
    if "c" in roles and c is None:
        table[DERIVED_C] = 6.0 * number(cols.n) * number(d)
        c = DERIVED_C
    if "d" in roles and d is None:
        table[DERIVED_D] = number(c) / (6.0 * number(cols.n))
        d = DERIVED_D
    return table, Columns(n=cols.n, loss=cols.loss, c=c, d=d, run=cols.run)
