"""Several of Kaplan et al. 2020's laws fitted to one selection, as one fit: L(N), L(D) and
L(N, D) on the final losses of the runs, L(C_min) on the envelope of the training curves.

The joint L(N, D) is the one that predicts a loss from (N, D), so predict and band (the
extrapolation check) are its; no law here gives a compute-optimal allocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits.base import Estimate, FitRequest
from analysis.fits.kaplan import fit_kaplan_1d, fit_kaplan_compute, fit_kaplan_nd
from scaling.config import ConfigError

LAWS = ("n", "d", "c", "nd")
LAW_NAMES = {"n": "L(N)", "d": "L(D)", "c": "L(C_min)", "nd": "L(N,D)"}
LAW_PARAMS = {"n": 2, "d": 2, "c": 2, "nd": 4}
LAW_ROLES = {"n": {"n"}, "d": {"d"}, "c": {"c"}, "nd": {"n", "d"}}


def parse_laws(text: str) -> tuple[str, ...]:
    laws = [s.strip().lower() for s in text.split(",") if s.strip()]
    for law in laws:
        if law not in LAWS:
            raise ConfigError("--law", f"unknown law {law!r}", f"use a comma list of {LAWS}")
    if not laws:
        raise ConfigError("--law", "no law given", "e.g. --law nd,c")
    return tuple(dict.fromkeys(laws))


@dataclass
class KaplanLaws:
    """The fitted laws by short name (n, d, c, nd), with the envelope behind L(C_min)."""

    laws: dict
    frontier: pd.DataFrame | None = field(default=None, repr=False)

    def estimates(self) -> dict[str, Estimate]:
        out = {}
        for law, fit in self.laws.items():
            name = LAW_NAMES[law]
            out |= {f"{name} {k}": e._replace(law=name) for k, e in fit.estimates().items()}
        return out

    def allocation(self, C) -> None:
        """Kaplan's laws are not solved for a compute-optimal allocation here."""

    def _joint(self):
        if "nd" not in self.laws:
            raise ConfigError("--law", "only L(N, D) predicts a loss from (N, D)", "add nd")
        return self.laws["nd"]

    def predict(self, N, D) -> np.ndarray:
        return self._joint().predict(N, D)

    def band(self, N, D):
        return self._joint().band(N, D)

    def to_dict(self) -> dict:
        return {"laws": {LAW_NAMES[law]: f.to_dict() for law, f in self.laws.items()}}


def fit_kaplan_laws(table: pd.DataFrame, request: FitRequest) -> KaplanLaws:
    """The laws in request.options["laws"] (default nd, c) on the selected rows."""
    cols, opts, boot = request.columns, request.options, request.boot.to_dict()
    fits, frontier = {}, None
    for law in opts.get("laws", ("nd", "c")):
        if law == "nd":
            fits[law] = fit_kaplan_nd(table, n_col=cols.n, d_col=cols.d, loss_col=cols.loss, **boot)
        elif law == "c":
            curves = table if request.curves is None else request.curves
            frontier, fits[law] = fit_kaplan_compute(
                curves, cols.c, loss_col=cols.loss, n_bins=opts.get("bins", 20),
                irreducible=opts.get("irreducible", False), **boot,
            )  # fmt: skip
        else:
            x_col = cols.n if law == "n" else cols.d
            fits[law] = fit_kaplan_1d(
                table, x_col, loss_col=cols.loss, law=LAW_NAMES[law],
                irreducible=opts.get("irreducible", False), **boot,
            )  # fmt: skip
    return KaplanLaws(fits, frontier)
