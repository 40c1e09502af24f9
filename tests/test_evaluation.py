import math

import pytest
import torch

from evaluation import metric_rows, positive_ranks


def metric_sums(scores, pos_mask, valid, ks):
    """Per-K sums of ``metric_rows`` over the rows: {k: {metric: float}}."""
    return {k: {m: v.sum().item() for m, v in per.items()} for k, per in metric_rows(scores, pos_mask, valid,
                                                                                      ks).items()}


def naive(scores, pos_mask, valid, k):
    """Per-row loop: sort valid candidates by (score desc, negatives before positives, column)."""
    out = {'precision': 0.0, 'recall': 0.0, 'ndcg': 0.0, 'hit': 0.0}
    for r in range(scores.size(0)):
        cols = [c for c in range(scores.size(1)) if valid[r, c]]
        ranked = sorted(cols, key=lambda c: (-scores[r, c].item(), bool(pos_mask[r, c]), c))
        rel = [bool(pos_mask[r, c]) for c in ranked[:k]]
        P = int(pos_mask[r].sum())
        hits = sum(rel)
        dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(rel) if x)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(P, k)))
        out['precision'] += hits / k
        out['recall'] += hits / P
        out['ndcg'] += dcg / idcg
        out['hit'] += float(hits > 0)
    return out


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('tied', [True, False])
def test_matches_naive_loop_with_ties_and_padding(seed, tied):
    g = torch.Generator().manual_seed(seed)
    R, C = 40, 30
    scores = torch.randint(0, 6, (R, C), generator=g).float() if tied else torch.randn(R, C, generator=g)
    valid = torch.ones(R, C, dtype=torch.bool)
    n_valid = torch.randint(15, C + 1, (R,), generator=g)
    valid &= torch.arange(C) < n_valid.unsqueeze(1)
    pos_mask = (torch.rand(R, C, generator=g) < 0.2) & valid
    pos_mask[:, 0] = True                                             # at least one positive per row
    for k in (1, 5, 10):
        fast = metric_sums(scores, pos_mask, valid, [k])[k]
        slow = naive(scores, pos_mask, valid, k)
        for m in fast:
            assert fast[m] == pytest.approx(slow[m], abs=1e-5), (k, m)


def test_hand_computed_row():
    # 6 candidates; positives at columns 1 and 4; order by score: c2 (0.9), c1 (0.8, pos), c0, c4 (pos), c3, c5
    scores = torch.tensor([[0.5, 0.8, 0.9, 0.1, 0.3, 0.0]])
    pos = torch.tensor([[False, True, False, False, True, False]])
    valid = torch.ones_like(pos)
    ranks, is_pos = positive_ranks(scores, pos, valid)
    assert ranks.tolist() == [[1, 3]] and is_pos.all()
    m = metric_sums(scores, pos, valid, [2, 5])
    assert m[2]['precision'] == pytest.approx(0.5) and m[2]['recall'] == pytest.approx(0.5)
    assert m[2]['ndcg'] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m[5]['recall'] == pytest.approx(1.0) and m[5]['hit'] == 1.0
    assert m[5]['ndcg'] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))


def test_constant_scorer_gets_zero_hits():
    R, C = 8, 1005
    scores = torch.zeros(R, C)
    pos = torch.zeros(R, C, dtype=torch.bool)
    pos[:, 1000:] = True
    m = metric_sums(scores, pos, torch.ones_like(pos), [5, 10])
    assert all(v == 0.0 for k in m for v in m[k].values())


def test_ndcg_never_exceeds_one():
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(50, 40, generator=g)
    pos = torch.rand(50, 40, generator=g) < 0.5
    pos[:, 0] = True
    m = metric_sums(scores, pos, torch.ones_like(pos), [10])[10]
    assert 0 < m['ndcg'] / 50 <= 1.0


@pytest.mark.parametrize('levels', [None, 60, 2])
def test_wide_rows_match_naive_loop(levels):
    # more candidates than 8 x K: only the candidates scored at least the K-th best are ranked, taken from topk for a
    # row with no tie at the K-th score (levels=None: every row), by a comparison over the rows tied there (60: some
    # rows, 2: every row); ties, padding and an all-valid expanded mask
    g = torch.Generator().manual_seed(levels or 0)
    R, C = 12, 200
    scores = torch.randn(R, C, generator=g) if levels is None else torch.randint(0, levels, (R, C), generator=g).float()
    pos_mask = torch.rand(R, C, generator=g) < 0.05
    pos_mask[:, 3] = True
    pos_mask[:, 7] = True                                             # two positives of one row can tie
    for valid in (torch.ones((), dtype=torch.bool).expand(R, C), torch.arange(C) < C - 20 + torch.zeros(R, 1)):
        pm = pos_mask & valid
        for k in (5, 10):
            fast = metric_sums(scores, pm, valid, [k])[k]
            slow = naive(scores, pm, valid, k)
            for m in fast:
                assert fast[m] == pytest.approx(slow[m], abs=1e-5), (levels, k, m)
            # the caller's positive counts (a FullSplit's CSR) give the same rows as counting the mask
            given = metric_rows(scores, pm, valid, [k], pm.sum(1))[k]
            counted = metric_rows(scores, pm, valid, [k])[k]
            assert all(torch.equal(given[m], counted[m]) for m in counted)


def test_wide_rows_mixing_exact_and_tied_rows_match_naive_loop():
    # one block where some rows tie at the K-th score (their candidates found by a comparison) and the others do not
    # (theirs taken from topk), and where two positives of a row share a score inside the top K
    g = torch.Generator().manual_seed(7)
    R, C, k = 30, 300, 10
    scores = torch.randn(R, C, generator=g)
    pos_mask = torch.rand(R, C, generator=g) < 0.03
    pos_mask[:, 40] = pos_mask[:, 250] = True
    scores[::2, 40] = scores[::2, 250] = 5.0                          # tied positives, ranked 1st and 2nd
    order = scores.argsort(1, descending=True)
    rows = torch.arange(0, R, 3)
    scores[rows, order[rows, k]] = scores[rows, order[rows, k - 1]]  # a tie at the K-th score in every third row
    top = scores.topk(k + 1, 1).values
    exact = top[:, k] < top[:, k - 1]
    assert 0 < int(exact.sum()) < R
    valid = torch.ones((), dtype=torch.bool).expand(R, C)
    for kk in (k, 5):
        fast = metric_sums(scores, pos_mask, valid, [kk, k])[kk]
        slow = naive(scores, pos_mask, valid, kk)
        for m in fast:
            assert fast[m] == pytest.approx(slow[m], abs=1e-5), (kk, m)


class _FixedScores:
    """A scorer stub for ``evaluate``: the scores of every (row, hashtag) are a fixed table, looked up by user."""
    training = False

    def __init__(self, table):
        self.table = table

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def encode(self):
        return {}

    def score(self, enc, users, posts, candidates):
        return torch.gather(self.table[users], 1, candidates)

    def score_all(self, enc, users, posts):
        return self.table[users]


def test_nan_and_infinite_scores_rank_last_and_finite_ones_are_untouched(tiny_data):
    """evaluate rewrites a block's scores only when one of them is not finite: a NaN then ranks as the lowest
    score (it never wins a comparison), +-inf as the largest / lowest finite values; an all-finite table is ranked
    as it is."""
    from evaluation import evaluate, full_split
    g = torch.Generator().manual_seed(0)
    split = full_split(tiny_data, tiny_data.val)
    table = torch.randn(tiny_data.num_user, tiny_data.num_hashtag, generator=g)
    bad = table.clone()
    bad[torch.rand(bad.shape, generator=g) < 0.3] = float('nan')
    bad[:, 0] = float('inf')
    lowest = torch.finfo(torch.float32)
    want = torch.where(torch.isnan(bad), torch.full_like(bad, lowest.min), bad).clamp(lowest.min, lowest.max)
    got = evaluate(_FixedScores(bad), split)
    assert got == evaluate(_FixedScores(want), split)
    assert evaluate(_FixedScores(table), split) != got
