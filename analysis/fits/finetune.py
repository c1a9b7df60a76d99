"""Fine-tuning scaling: the error after fine-tuning on D examples, per model size and jointly,
and the data that pre-training is worth.

Per model size N (and init, analysis.fits.finetune_data):

    error(D) = E + A D^-alpha,

E the floor more examples do not get below, A and alpha how fast the reducible part falls.
From it: the "per doubling" change at the largest D run, error(2 D_max) / error(D_max), and
2^-alpha, the factor every doubling applies to the reducible part; the examples that reach a
target error, D* = (A / (target - E))^(1 / alpha), "unreachable" where target <= E.

Jointly over the sizes, Zhang et al. 2024 ("When Scaling Meets LLM Finetuning: The Effect of
Data, Model and Finetuning Method", ICLR 2024, arXiv:2402.17193), the multiplicative law

    L(X, D_f) = A (1 / X^alpha) (1 / D_f^beta) + E,   X = N here,

whose paper fits it to the test loss; here to the error, by the same fit as the per-size law.

Effective data transferred, Hernandez et al. 2021 ("Scaling Laws for Transfer",
arXiv:2102.01293): with a from-scratch baseline of the same size trained on the task
alone, D_E is the from-scratch data that reaches the fine-tuned error (the from-scratch law
inverted), D_T = D_E - D_F, and D_T = k D_F^alpha N^beta is fitted by least squares in log D_T
on the (N, D_F) whose D_T is finite and > 0 (a fine-tune below the from-scratch floor has no
finite D_E; one above the from-scratch curve transferred nothing).

Fit (analysis.fits.finetune_laws): weighted least squares on the cell means (the mean error
of a cell's seeds), weights the inverse variance of a cell mean (binomial item noise from
n_items plus the pooled seed variance; finetune_data.Runs.weights), fixed from the data. Not in
log space: the noise is additive with a known binomial variance, an error of 0 is a valid
observation, and least squares in log error would give the smallest errors, the noisiest
relative to their size, the most weight.

Intervals: percentile intervals over resamples of test items and seeds
(finetune_data.resample_cells); every law of a resample is fitted to the same resampled cell
means. Their coverage on synthetic fine-tunes: tests/test_analysis_finetune.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.fits.base import Estimate
from analysis.fits.bootstrap import percentile_band, percentile_interval
from analysis.fits.finetune_data import PRETRAINED, SCRATCH, Runs, resample_cells
from analysis.fits.finetune_laws import (
    EXPONENT,
    JOINT_LAW,
    LAW,
    QUANTITIES,
    SIZE_EXPONENT,
    TRANSFER_LAW,
    Joint,
    Transfer,
    fit_curves,
    fit_joint,
    fit_transfer,
    interval_with_inf,
)
from analysis.inputs import ConfigError
from analysis.tables import json_safe


def _attempt(fit):
    """A law's fit, or (None, the reason) when the data cannot support it."""
    try:
        return fit(), ""
    except ConfigError as e:
        return None, f"{e.problem}; {e.fix}"


@dataclass
class FinetuneFit:
    """Every law of the fine-tuning table with bootstrap percentile intervals."""

    runs: Runs
    target: float
    ci: float
    n_boot: int
    seed: int
    curves: dict
    skipped: list
    joint: Joint | None
    joint_skipped: str
    transfer: Transfer | None
    transfer_skipped: str

    def label(self, init, size) -> str:
        return ("scratch " if init == SCRATCH else "") + f"N={size:.4g}"

    def size_estimates(self) -> dict[tuple, dict[str, Estimate]]:
        """{(init, size): {quantity: Estimate}} of every fitted size."""
        out = {}
        for key, c in self.curves.items():
            value, boot = c.quantities(c.params, self.target), c.quantities(c.boot, self.target)
            law = self.label(*key)
            out[key] = {
                k: Estimate(
                    float(value[k][0]),
                    *(interval_with_inf if k == "examples_to_target" else percentile_interval)(
                        boot[k], self.ci
                    ),
                    law,
                )
                for k in QUANTITIES
            }
        return out

    def joint_estimates(self) -> dict[str, Estimate]:
        if self.joint is None:
            return {}
        value, boot = (self.joint.quantities(p) for p in (self.joint.params, self.joint.boot))
        law = "joint (Zhang et al.)"
        return {
            k: Estimate(float(value[k][0]), *percentile_interval(boot[k], self.ci), law)
            for k in value
        }

    def transfer_estimates(self) -> dict[str, Estimate]:
        if self.transfer is None:
            return {}
        law, t = "transfer (Hernandez et al.)", self.transfer.law
        k = np.exp(t[:, 0])
        cols = {"k": k, "alpha": t[:, 1], "beta": t[:, 2]}
        return {
            name: Estimate(float(v[0]), *percentile_interval(v[1:], self.ci), law)
            for name, v in cols.items()
        }

    def estimates(self) -> dict[str, Estimate]:
        out = {}
        for est in self.size_estimates().values():
            out |= {f"{e.law} {k}": e for k, e in est.items()}
        for est in (self.joint_estimates(), self.transfer_estimates()):
            out |= {f"{e.law} {k}": e for k, e in est.items()}
        return out

    def predict(self, size, D) -> np.ndarray:
        """The pretrained fine-tune curve of `size` at D."""
        return self.curves[(PRETRAINED, size)].predict(D)

    def band(self, size, D, init: str = PRETRAINED) -> tuple[np.ndarray, np.ndarray]:
        c = self.curves[(init, size)]
        return percentile_band(c.predict(D, c.boot), self.ci)

    def allocation(self, C) -> None:
        """Fine-tuning laws give no compute-optimal allocation."""

    def reach(self, key) -> str:
        """Plain words on the target for one size: reachable, unreachable, or maybe not."""
        e = self.size_estimates()[key]
        d, floor = e["examples_to_target"], e["E"]
        if not np.isfinite(d.value):
            return (
                f"unreachable: the target {self.target:.4g} is at or below the floor E = "
                f"{floor.value:.4g} [{floor.lo:.4g}, {floor.hi:.4g}]"
            )
        d_max = self.curves[key].examples.max()
        where = f"{d.value / d_max:.3g}x the largest run" if d.value > d_max else "within the runs"
        if not np.isfinite(d.hi):
            return (
                f"{d.value:.4g} examples ({where}), but possibly unreachable: the floor's "
                f"interval [{floor.lo:.4g}, {floor.hi:.4g}] reaches the target"
            )
        return f"{d.value:.4g} [{d.lo:.4g}, {d.hi:.4g}] examples ({where})"

    def warnings(self) -> list[str]:
        """Exponents at the edge of their search range (the data do not pin them), resamples
        that fitted no falling curve, cells with one or two seeds, extrapolated D_E."""
        laws = [(self.label(*k), c.params[2:], [EXPONENT], c.boot) for k, c in self.curves.items()]
        if self.joint is not None:
            j = self.joint
            laws.append(("joint law", j.params[2:], [SIZE_EXPONENT, EXPONENT], j.boot))
        out = []
        for name, exponents, bounds, boot in laws:
            for v, (lo, hi) in zip(exponents, bounds, strict=True):
                if not lo + 1e-3 < v < hi - 1e-3:
                    out.append(
                        f"{name}: exponent {v:.3g} at the edge of [{lo:g}, {hi:g}]: the "
                        "runs do not pin it"
                    )
            if np.mean(np.isnan(boot[:, 0])) > 0.05:
                out.append(
                    f"{name}: {np.mean(np.isnan(boot[:, 0])):.0%} of the resamples fitted "
                    "no error falling with examples: its intervals are unreliable"
                )
        seeds = int(self.runs.cells["k"].min())
        if seeds == 1:
            out.append("cells with one seed: their seed noise is not in the intervals; run 3")
        elif seeds == 2:
            out.append(
                "cells with 2 seeds: the seed part of the intervals rests on two runs a "
                "cell (coverage down to 0.85 where seed noise dominates); run 3 or more"
            )
        if self.transfer is not None and self.transfer.extrapolated:
            out.append(
                f"{self.transfer.extrapolated} fine-tune cell(s) reach an error whose "
                "from-scratch data D_E lies beyond the largest from-scratch run"
            )
        return out

    def to_dict(self) -> dict:
        sizes = []
        for key, est in self.size_estimates().items():
            sizes.append(
                {
                    "init": key[0],
                    "size": key[1],
                    "d_max": self.curves[key].examples.max(),
                    "target": self.target,
                    "reach": self.reach(key),
                    **{k: [e.value, e.lo, e.hi] for k, e in est.items()},
                }
            )
        section = lambda est, skip: (
            {k: [e.value, e.lo, e.hi] for k, e in est.items()}
            if est
            else {"status": "skipped", "reason": skip}
        )
        joint = section(self.joint_estimates(), self.joint_skipped)
        if self.joint is not None:
            joint |= {"law": JOINT_LAW, "rmse": self.joint.rmse}
        transfer = section(self.transfer_estimates(), self.transfer_skipped)
        if self.transfer is not None:
            transfer |= {"law": TRANSFER_LAW, "cells_extrapolated": self.transfer.extrapolated}
        return json_safe(
            {
                "status": "ok",
                "law": LAW,
                "estimate_format": "[value, lo, hi]",
                "sizes": sizes,
                "sizes_skipped": self.skipped,
                "joint": joint,
                "transfer": transfer,
                "warnings": self.warnings(),
                "ci": self.ci,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "columns": asdict(self.runs.cols),
                "settings": {
                    "fit": "weighted least squares on cell means (inverse binomial + seed "
                    "variance), E >= 0, A > 0; exponents by grid and zoom",
                    "bootstrap": "seeds resampled within each cell (deviations scaled by "
                    "sqrt(k / (k - 1))); one test set per resample shared by every run: "
                    + (
                        "items resampled (per-item correctness)"
                        if self.runs.correct is not None
                        else "n_items difficulties u ~ U(0, 1), error #{u < p} / n_items"
                    ),
                },
            }
        )


def fit_finetune(
    runs: Runs,
    *,
    target: float | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> FinetuneFit:
    """Every law on checked runs (finetune_data.read_runs); target default: the lowest mean
    error of a pretrained cell (how many examples each size needs to match the best run)."""
    if target is not None and not 0 < target < 1:
        raise ConfigError("--target", f"must be an error in (0, 1), got {target}", "e.g. 0.1")
    rng = np.random.default_rng(seed)
    observed = runs.cells["error"].to_numpy(float)
    means = np.vstack([observed, resample_cells(runs, n_boot, rng)])
    w = runs.weights()
    if target is None:
        target = float(observed[runs.of(PRETRAINED)].min())
    curves, skipped = fit_curves(runs, means, w)
    joint, joint_skipped = _attempt(lambda: fit_joint(runs, means, w))
    transfer, transfer_skipped = _attempt(lambda: fit_transfer(runs, curves, means))
    return FinetuneFit(
        runs,
        target,
        ci,
        n_boot,
        seed,
        curves,
        skipped,
        joint,
        joint_skipped,
        transfer,
        transfer_skipped,
    )
