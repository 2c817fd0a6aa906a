"""Mean ± std over seeds and the confidence interval of a difference: paired over shared seeds, else Welch's.

No SciPy: Student's t distribution function is the regularized incomplete beta function
(evaluated by its continued fraction, Numerical Recipes §6.4), and its quantile is found by
bisection. Welch's degrees of freedom are fractional, which a printed t table cannot serve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence


def is_number(value) -> bool:
    """A value a mean can take: a NaN or Infinity (which Python's json writes by default, and reads back as floats)
    would make every mean and interval of its configuration nan, and JSON's true/false are ints to Python."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def sample_std(values: Sequence[float]) -> Optional[float]:
    """Standard deviation with n - 1 in the denominator; None below two values."""
    if len(values) < 2:
        return None
    center = mean(values)
    return math.sqrt(sum((v - center) ** 2 for v in values) / (len(values) - 1))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return fraction


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the distribution function of a Beta(a, b) variable at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The fraction converges fast on this side of the mean; use the symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (possibly fractional) degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, e.g. t_quantile(0.975, 4) = 2.776."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    while high - low > 1e-12 * high:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Difference:
    """mean(sample) - mean(baseline); low/high bound its confidence interval when there is one."""

    estimate: float
    low: Optional[float] = None
    high: Optional[float] = None
    df: Optional[float] = None
    paired: bool = False  # from per-seed differences (paired_difference), else Welch's

    @property
    def has_interval(self) -> bool:
        return self.low is not None


def welch_difference(sample: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Difference:
    """The difference of means with Welch's t interval (no equal-variance assumption).

    For configurations whose seeds do not pair up (a seed failed on one side): their spreads may differ
    (a regularised recipe often varies less), which is Welch's case. Either side needs two values for an interval.
    """
    estimate = mean(sample) - mean(baseline)
    if len(sample) < 2 or len(baseline) < 2:
        return Difference(estimate)
    var_a, var_b = sample_std(sample) ** 2 / len(sample), sample_std(baseline) ** 2 / len(baseline)
    standard_error = math.sqrt(var_a + var_b)
    if standard_error == 0.0:  # every seed agrees on both sides: no spread to widen the interval
        return Difference(estimate, estimate, estimate)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(sample) - 1) + var_b**2 / (len(baseline) - 1))
    half_width = t_quantile(0.5 + confidence / 2.0, df) * standard_error
    return Difference(estimate, estimate - half_width, estimate + half_width, df)


def paired_difference(sample: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Difference:
    """The mean of the pairs' differences (sample[i] pairs with baseline[i]) with the t interval on n - 1 df.

    Two configurations run with the same seeds share what the seed draws (data order, augmentations, the
    initial weights of one architecture), so their results are pairs, not independent samples. This interval
    holds whatever the pairs' correlation: it is narrower than Welch's when the seed moves both alike, and can
    be wider at 2-3 seeds when it does not (fewer degrees of freedom).
    """
    if len(sample) != len(baseline):
        raise ValueError(f"paired_difference needs pairs, got {len(sample)} and {len(baseline)} values")
    differences = [a - b for a, b in zip(sample, baseline)]
    estimate = mean(differences)
    if len(differences) < 2:
        return Difference(estimate, paired=True)
    standard_error = sample_std(differences) / math.sqrt(len(differences))
    if standard_error == 0.0:  # the same gain at every seed
        return Difference(estimate, estimate, estimate, paired=True)
    df = len(differences) - 1
    half_width = t_quantile(0.5 + confidence / 2.0, df) * standard_error
    return Difference(estimate, estimate - half_width, estimate + half_width, df, paired=True)
