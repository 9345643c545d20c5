"""Drift statistics: PSI, Jensen-Shannon, KS and chi-square p-values, merged KS/Wasserstein.

Pure numpy/math computations on sorted samples, bin shares and p-values (no frames);
`adjust_p_values` corrects a family of p-values for multiple testing.
"""

from __future__ import annotations

import math

import numpy as np

from hortus.monitoring._drift_config import CORRECTIONS, DriftError

#: support points per bin in `_merge_stats`, and per bin when a bin is cut again
MERGE_BIN_POINTS = 64
MERGE_SUB_POINTS = 8
MOMENT_BLOCK = 1 << 16  # values per block in `_mean_std` and `_bin_sums` (512 kB temporaries)


def _bin_counts(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of a sorted sample in (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    idx = np.searchsorted(s, edges, side="right")
    return np.diff(np.concatenate(([0], idx, [s.size]))).astype(np.int64)


def _scale(std: float, mean: float) -> float:
    if std > 0:
        return float(std)
    return abs(float(mean)) or 1.0


# ----------------------------------------------------------------- statistics
def _mean_std(s: np.ndarray) -> tuple[float, float]:
    """Return the mean and population standard deviation of a non-empty array.

    As ``s.mean(), s.std()`` (two passes: deviations from the mean), but the squared
    deviations are summed in blocks of `MOMENT_BLOCK` through one small buffer instead of
    a temporary as long as the sample (which costs fresh pages on every call).
    Agrees with numpy to about 1e-15 relative (different summation order).

    Examples
    --------
    >>> _mean_std(np.array([1.0, 2.0, 3.0, 4.0]))
    (2.5, 1.118033988749895)
    """
    mean = float(s.mean())
    buf = np.empty(min(s.size, MOMENT_BLOCK))
    total = 0.0
    for i in range(0, s.size, MOMENT_BLOCK):
        d = np.subtract(s[i : i + MOMENT_BLOCK], mean, out=buf[: min(MOMENT_BLOCK, s.size - i)])
        total += float(np.dot(d, d))
    return mean, math.sqrt(total / s.size)


def _psi(pr: np.ndarray, pc: np.ndarray, eps: float) -> float:
    a = np.maximum(pr, eps)
    b = np.maximum(pc, eps)
    return float(np.sum((b - a) * np.log(b / a)))


def _js_distance(pr: np.ndarray, pc: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (as scipy.spatial.distance.jensenshannon)."""
    m = (pr + pc) / 2.0

    def kl(p: np.ndarray) -> float:
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))

    return math.sqrt(max((kl(pr) + kl(pc)) / 2.0, 0.0))


def _ks_pvalue(d: float, n: int, m: int) -> float:
    """Return the asymptotic two-sided KS p-value for sample sizes n and m.

    Up to an effective size n*m/(n+m) of 10,000 this is scipy's ``method="asymp"``
    (the one-sample KS distribution at the rounded effective size); above it, the
    limiting Kolmogorov distribution at sqrt(size) * D (relative difference below 1%
    there, and scipy's exact-n routine takes about a second per call at 500,000).
    """
    en = n * m / (n + m)
    if en <= 10_000:
        from scipy.stats import kstwo  # scipy.stats takes about a second to import

        p = kstwo.sf(d, max(1, round(en)))
    else:
        p = _kolmogorov_sf(math.sqrt(en) * d)
    return float(min(max(p, 0.0), 1.0))


def _kolmogorov_sf(x: float) -> float:
    """Return P(K > x) of the Kolmogorov distribution, as ``scipy.special.kolmogorov``.

    Below x = 0.82 from the theta series of the CDF, sqrt(2 pi)/x * sum_k
    exp(-(2k-1)^2 pi^2 / (8 x^2)); above it from the alternating series 2 * sum_k
    (-1)^(k-1) exp(-2 k^2 x^2).  Both converge in a few terms to double precision
    (largest relative difference from scipy on a 10^5-point grid over [0, 6]: 1e-14),
    without importing scipy.special (about half a second on a busy 2-core machine).

    Examples
    --------
    >>> round(_kolmogorov_sf(1.3581), 4)
    0.05
    """
    if x <= 0.04:  # the CDF is below 1e-300 here
        return 1.0
    if x < 0.82:
        w = -(math.pi**2) / (8.0 * x * x)
        cdf, k = 0.0, 1
        while True:
            term = math.exp(w * (2 * k - 1) ** 2)
            cdf += term
            if term <= 1e-17 * cdf:
                break
            k += 1
        return 1.0 - math.sqrt(2.0 * math.pi) / x * cdf
    total, k, sign = 0.0, 1, 1.0
    while True:
        term = math.exp(-2.0 * k * k * x * x)
        total += sign * term
        if term <= 1e-17 * abs(total) or term == 0.0:
            break
        k, sign = k + 1, -sign
    return min(max(2.0 * total, 0.0), 1.0)


def _chi2_sf(stat: float, df: int) -> float:
    """Return P(X > stat) for a chi-square variable with `df` degrees of freedom.

    The regularised upper incomplete gamma function Q(df/2, stat/2), as
    ``scipy.stats.chi2.sf``: by its power series (Q = 1 - P) when stat/2 < df/2 + 1,
    else by its continued fraction (modified Lentz), so small p-values keep their
    relative precision.  Largest relative difference from scipy measured on 20,000
    random points each: 1e-13 for df up to 100, 1e-12 up to 1,000 and 2e-11 up to
    10,000 (the exponent of the prefactor loses digits as df grows); no scipy import.

    Examples
    --------
    >>> round(_chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    a, x = df / 2.0, stat / 2.0
    if x <= 0.0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * 1e-17:
                break
        return min(max(1.0 - total * math.exp(log_prefactor), 0.0), 1.0)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(max(math.exp(log_prefactor) * h, 0.0), 1.0)


def _merge_stats(
    xr: np.ndarray, cr: np.ndarray | None, xc: np.ndarray, cc: np.ndarray | None
) -> tuple[float, float]:
    """Return (KS D, Wasserstein-1) of two weighted samples with sorted distinct support.

    `cr` and `cc` are the cumulative counts of `xr` and `xc` with a leading 0 (None:
    every value occurs once).  Exact, without merging the two samples point by point:
    the larger support is cut into bins of `MERGE_BIN_POINTS` points and the other
    sample split at the same values (`searchsorted` of the cut points only).  The ECDF
    gap G = F_ref - F_cur just below each bin is known from the counts, and within a
    bin it moves by at most the bin's counts, so

    * where G keeps one sign through a bin, its integral there (the bin's share of W1)
      follows from the gap at the bin's start and, per side, the sum of (bin end -
      point) over the bin's points: one pass over each sample, no merge;
    * KS is the largest |G| at the bin starts unless a bin's bound exceeds it;
    * the other bins (where G may change sign, or whose bound exceeds that KS) are cut
      again into bins of `MERGE_SUB_POINTS` points and the same applies; only what is
      left (about 1% of the points) is merged point by point (`_merge_bins`).

    The gaps are the same floating-point numbers as in a full merge (count / total -
    count / total), so KS is identical; W1 agrees to rounding (about 1e-15 relative).
    """
    if xc.size > xr.size:  # cut the larger support; KS and W1 are symmetric
        xr, cr, xc, cc = xc, cc, xr, cr
    n_r, n_c = xr.size, xc.size
    ref = (xr, cr, n_r if cr is None else int(cr[-1]))
    cur = (xc, cc, n_c if cc is None else int(cc[-1]))
    starts = np.arange(0, n_r, MERGE_BIN_POINTS)
    cuts = xr[starts]
    jc = np.searchsorted(xc, cuts, side="left")
    # bin 0 holds the current points below the smallest reference point, bin t >= 1
    # the reference points [starts[t-1], starts[t]) and the current points between
    bins = (
        np.concatenate(([0], starts)),  # first reference index
        np.concatenate(([0], starts[1:], [n_r])),  # end reference index
        np.concatenate(([0], jc)),  # first current index
        np.concatenate((jc, [n_c])),  # end current index
        np.concatenate(([min(xr[0], xc[0])], cuts)),  # lower end
        np.concatenate((cuts, [max(xr[-1], xc[-1])])),  # upper end
    )
    ks, w1, rest = _one_sign_bins(ref, cur, bins, 0.0)
    if rest.size and (bins[1][rest] > bins[0][rest]).all():  # each has reference points
        bins = _split_bins(xr, xc, tuple(b[rest] for b in bins), MERGE_SUB_POINTS)
        ks, w1_sub, rest = _one_sign_bins(ref, cur, bins, ks)
        w1 += w1_sub
    if rest.size:
        rlo, rhi, clo, chi, _, hi = (b[rest] for b in bins)
        ks_m, w1_m = _merge_bins((*ref, rlo, rhi), (*cur, clo, chi), hi)
        ks = max(ks, ks_m)
        w1 += w1_m
    return ks, w1


def _one_sign_bins(
    ref: tuple, cur: tuple, bins: tuple, ks: float
) -> tuple[float, float, np.ndarray]:
    """Return (KS so far, W1 over the bins where G keeps one sign, the other bins).

    `ref` and `cur` are (sorted support, cumulative counts or None, total); `bins` is
    (first/end reference index, first/end current index, lower/upper end) per bin,
    disjoint and in order, each starting at its lower end.  The bins returned are
    those where G may change sign or whose bound on |G| exceeds the KS so far.
    """
    (xr, cr, nr), (xc, cc, nc) = ref, cur
    rlo, rhi, clo, chi, lo, hi = bins
    a_lo, a_hi = (rlo, rhi) if cr is None else (cr[rlo], cr[rhi])
    b_lo, b_hi = (clo, chi) if cc is None else (cc[clo], cc[chi])
    gap = a_lo / nr - b_lo / nc  # G just below each bin (an attained value)
    ks = max(ks, float(np.abs(gap).max()))
    # float rounding is monotone, so these bound every gap computed inside the bin
    bound = np.maximum(a_hi / nr - b_lo / nc, b_hi / nc - a_lo / nr)
    one_sign = (a_lo * nc >= b_hi * nr) | (a_hi * nc <= b_lo * nr)  # exact integers
    area = gap * (hi - lo)  # + the integrals of the ECDFs' steps inside each bin
    area += _bin_sums(xr, cr, hi, rlo, rhi) / nr
    area -= _bin_sums(xc, cc, hi, clo, chi) / nc
    rest = ~one_sign | (bound > ks)
    return ks, float(np.abs(area[~rest]).sum()), np.flatnonzero(rest)


def _split_bins(xr: np.ndarray, xc: np.ndarray, bins: tuple, k: int) -> tuple:
    """Cut each bin (with reference points, see `_one_sign_bins`) into bins of `k` points."""
    rlo, rhi, clo, chi, _, hi = bins
    n_sub = -(-(rhi - rlo) // k)
    first = np.cumsum(n_sub) - n_sub
    starts = np.repeat(rlo - k * first, n_sub) + k * np.arange(int(n_sub.sum()))
    last = first + n_sub - 1
    ends = np.minimum(starts + k, np.repeat(rhi, n_sub))
    lo_sub = xr[starts]
    jc = np.searchsorted(xc, lo_sub, side="left")
    jc[first] = clo  # the bins' own splits (the same values)
    jc_end = np.empty_like(jc)
    jc_end[:-1] = jc[1:]
    jc_end[last] = chi
    hi_sub = np.empty_like(lo_sub)
    hi_sub[:-1] = lo_sub[1:]
    hi_sub[last] = hi
    return starts, ends, jc, jc_end, lo_sub, hi_sub


def _bin_sums(
    x: np.ndarray, c: np.ndarray | None, hi: np.ndarray, lo_idx: np.ndarray, hi_idx: np.ndarray
) -> np.ndarray:
    """Return per bin the sum of count * (bin end - point) over its points.

    Bin b holds the points ``x[lo_idx[b]:hi_idx[b]]`` (in order) with counts from the
    cumulative counts `c` (None: 1 each) and ends at ``hi[b]``.  Adjacent bins are
    summed in runs of whole bins of about `MOMENT_BLOCK` points, so the temporaries
    stay in cache; each term is a difference of nearby values, summed without
    cancellation.
    """
    out = np.zeros(hi.size)
    n_in = hi_idx - lo_idx
    if hi.size > 1 and not np.array_equal(lo_idx[1:], hi_idx[:-1]):  # scattered bins
        idx, _, ends = _ranges(lo_idx, hi_idx)
        d = np.repeat(hi, n_in) - x[idx]
        if c is not None:
            d *= c[idx + 1] - c[idx]
        full = np.flatnonzero(n_in)
        if full.size:
            out[full] = np.add.reduceat(d, (ends - n_in)[full])
        return out
    ends = np.cumsum(n_in)
    cuts = np.searchsorted(ends, np.arange(MOMENT_BLOCK, int(ends[-1]), MOMENT_BLOCK))
    bounds = [0, *np.unique(cuts + 1).tolist(), hi.size]
    for g0, g1 in zip(bounds[:-1], bounds[1:], strict=True):
        if g0 >= g1:
            continue
        e0, e1 = int(lo_idx[g0]), int(hi_idx[g1 - 1])
        if e0 == e1:
            continue
        counts = n_in[g0:g1]
        d = np.repeat(hi[g0:g1], counts)
        d -= x[e0:e1]
        if c is not None:
            d *= np.diff(c[e0 : e1 + 1])
        full = np.flatnonzero(counts)
        out[g0 + full] = np.add.reduceat(d, lo_idx[g0 + full] - e0)
    return out


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the concatenated index ranges [lo, hi), their lengths and cumulative ends."""
    n = hi - lo
    ends = np.cumsum(n)
    return np.repeat(lo - (ends - n), n) + np.arange(int(ends[-1])), n, ends


def _merge_bins(ref: tuple, cur: tuple, hi: np.ndarray) -> tuple[float, float]:
    """Return (largest |G|, integral of |G|) over the given bins, merged point by point.

    `ref` and `cur` are (sorted support, cumulative counts or None, total, first index,
    end index) per bin; `hi` is each bin's upper end.  The bins are disjoint in value
    and in order, so one stable sort of the selected points (two sorted runs, the
    reference first at equal values) merges every bin at once.
    """
    (xr, cr, nr, rlo, rhi), (xc, cc, nc, clo, chi) = ref, cur
    ir, len_r, end_r = _ranges(rlo, rhi)
    ic, len_c, end_c = _ranges(clo, chi)
    z = np.concatenate((xr[ir], xc[ic]))
    if z.size == 0:
        return 0.0, 0.0
    order = np.argsort(z, kind="stable")
    z = z[order]
    bins = np.arange(rlo.size)
    where = np.concatenate((np.repeat(bins, len_r), np.repeat(bins, len_c)))[order]
    kr = np.cumsum(order < ir.size)  # selected reference points up to each point
    kc = np.arange(1, z.size + 1) - kr
    kr += (rlo - (end_r - len_r))[where]  # + the reference points before the bin
    kc += (clo - (end_c - len_c))[where]
    g = (kr if cr is None else cr[kr]) / nr
    g -= (kc if cc is None else cc[kc]) / nc
    np.abs(g, out=g)
    last = np.empty(z.size, dtype=bool)  # the last point of each run of equal values
    np.not_equal(z[1:], z[:-1], out=last[:-1])
    last[-1] = True
    step = np.empty_like(z)  # to the next point, or to the bin's end
    step[:-1] = z[1:]
    ends = end_r + end_c - 1
    filled = len_r + len_c > 0
    step[ends[filled]] = hi[filled]
    step -= z
    return float(g[last].max()), float(np.dot(g, step))


def _support(s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the distinct values of a sorted array and their cumulative counts (from 0).

    The counts are None when every value is distinct (continuous data), sparing an
    array as long as the sample.
    """
    change = s[1:] != s[:-1]
    if change.all():
        return s, None
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return s[starts], np.append(starts, s.size)


def adjust_p_values(p: np.ndarray, method: str) -> np.ndarray:
    """Adjust p-values for multiple testing: "bh" (Benjamini-Hochberg), "bonferroni", "none".

    Examples
    --------
    >>> adjust_p_values(np.array([0.01, 0.04, 0.03]), "bh").round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "bh":
        order = np.argsort(p, kind="stable")
        ranked = p[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        return out
    raise DriftError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
