"""The statistics of the tables: mean ± std over seeds, and a seed-paired bootstrap over test rows."""
import statistics

import numpy as np


def paired_bootstrap(a, b, n_boot=1000, seed=0, level=0.95):
    """Mean of a - b and its ``level`` interval by a paired bootstrap over rows.

    a, b: [S, R] per-row metrics of two models on the same R test rows for S seeds (seed s of a paired with seed s
    of b; a deterministic model is repeated). The per-row difference is averaged over seeds, then rows are
    resampled with replacement ``n_boot`` times; the interval is the percentile interval of the resampled means.
    """
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).reshape(-1, np.shape(a)[-1]).mean(0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi)


def verdict(lo, hi):
    return 'better' if lo > 0 else 'worse' if hi < 0 else 'not distinguishable'


def mean_std(values):
    if not values:
        return '—'
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.fmean(values):.4f} ± {s:.4f}'
