"""The statistics of the experiments: one summary (:func:`mean_std`) and one significance test,
the two-sided paired t-test at 5% (:func:`paired_ttest`), used by ``mgmae study`` and by
``mgmae finetune --compare-scratch`` alike.

Runs are paired by seed (same initialisation, data order and evaluation set), so the test is on
the per-seed differences ``d_i = a_i - b_i``: ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1``
degrees of freedom, two-sided, significant when ``p < 0.05``. Student's t distribution is computed
here (regularised incomplete beta function, continued fraction), so there is no SciPy dependency;
``tests/test_study.py`` checks it against the textbook table (and SciPy where installed).

With one seed there is no test: one difference carries no estimate of the spread over seeds
(which is what decides whether a difference is real; on the synthetic motion labels a model from
scratch sits at chance for a number of steps that changes with the seed). :func:`paired_ttest`
returns None then, and the callers say "one seed: no test".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ALPHA", "PairedTest", "mean_std", "paired_ttest", "t_critical", "t_sf", "verdict"]

ALPHA = 0.05  # two-sided significance level


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value), count; None and NaN dropped."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan"), 0
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s, len(v)


# ----------------------------------------------------------------------------- Student's t
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """Two-sided tail probability ``P(|T| >= |t|)`` of Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_critical(df: int, alpha: float = ALPHA) -> float:
    """The two-sided critical value: ``|t| >= t_critical(df)`` is significant at ``alpha``
    (4.303 at df 2, 2.776 at df 4, 1.960 as df grows)."""
    lo, hi = 0.0, 1e4
    for _ in range(200):  # bisection: t_sf falls monotonically in t
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2


# ----------------------------------------------------------------------------- the test
@dataclass
class PairedTest:
    """A paired two-sided t-test of per-seed differences."""

    n: int  # pairs
    mean: float  # mean difference
    sd: float  # standard deviation of the differences (after the resolution floor)
    se: float  # sd / sqrt(n)
    t: float
    df: int
    p: float
    significant: bool  # p < ALPHA

    @property
    def direction(self) -> str:
        """``higher`` / ``lower`` when significant, else ``n.s.``."""
        if not self.significant:
            return "n.s."
        return "higher" if self.mean > 0 else "lower"

    def describe(self) -> str:
        """``paired t-test: t=2.59, df=4, p=0.061 (not significant at 5%)``."""
        p = f"{self.p:.3f}" if self.p >= 0.001 else f"{self.p:.1e}"
        return (f"paired t-test: t={self.t:.2f}, df={self.df}, p={p} "
                f"({'' if self.significant else 'not '}significant at {100 * ALPHA:g}%)")

    def to_dict(self) -> dict[str, Any]:
        return {"test": "paired t-test, two-sided", "alpha": ALPHA, **asdict(self)}


def paired_ttest(diffs, *, resolution: float = 0.0) -> PairedTest | None:
    """The paired two-sided t-test of the differences ``diffs`` (None and NaN dropped); None
    with fewer than two (one seed: no test). ``resolution``: the metric's step (one held-out
    video for an accuracy); the standard deviation is floored at it, so differences of exactly
    one video on every seed do not count as certain. Differences with no spread at all are
    significant when their mean is not zero."""
    m, s, n = mean_std(diffs)
    if n < 2:
        return None
    s = max(s, resolution)
    se = s / math.sqrt(n)
    if se == 0:
        t = 0.0 if m == 0 else math.copysign(math.inf, m)
    else:
        t = m / se
    p = t_sf(t, n - 1)
    return PairedTest(n=n, mean=m, sd=s, se=se, t=t, df=n - 1, p=p, significant=p < ALPHA)


def verdict(diffs, resolution: float = 0.0) -> str:
    """The study's short verdict of a paired comparison: ``higher`` / ``lower`` when the paired
    t-test is significant, ``n.s.`` otherwise, ``n=1`` with one seed (no test)."""
    test = paired_ttest(diffs, resolution=resolution)
    return "n=1" if test is None else test.direction
