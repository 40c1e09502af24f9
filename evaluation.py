"""Ranking metrics over val/test rows (SPEC §4): Precision, Recall, NDCG and Hit at each K, batched tensor code,
under both protocols: *sampled* (an ``EvalSplit``: each row's 1,000 negatives + P positives, the paper's) and *full*
(a ``FullSplit``: every hashtag of the vocabulary, nothing masked, scored in blocks of rows).

Each row ranks its candidates by score. A positive's rank counts every valid
candidate scored strictly higher, every negative scored equal (ties go against the positives, so a constant
scorer gets zero hits) and every positive scored equal that comes before it. Then, per row,
    Precision@K = hits / K,  Recall@K = hits / P,  Hit@K = [hits > 0],
    NDCG@K = sum_{positives ranked < K} 1 / log2(rank + 2)  /  sum_{i < min(P, K)} 1 / log2(i + 2),
averaged over rows (sums accumulated over batches, divided once).
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from phr.core.base import Posts

# ---- the metrics: each a function of the ranks of a row's positives, registered by name (as RecBole's metrics)

METRICS = {}   # name -> fn(ranks [R, Pm], is_pos [R, Pm], num_pos [R], k) -> [R] float: the metric@k of each row


def register_metric(name):
    """Add a metric: ``fn(ranks, is_pos, num_pos, k)`` of the 0-based ranks of every row's positives (``is_pos``
    marks the real ones of the padded [R, Pm] table; ties counted against the positives) and the rows' positive counts
    -> each row's value at K. Every evaluation then reports it at every K of ``--topk`` as f'{name}@{k}', and
    ``train.py --select`` can select on it."""
    def add(fn):
        METRICS[name] = fn
        return fn
    return add


def _hits(ranks, is_pos, k):
    return (is_pos & (ranks < k)).sum(1).float()


@register_metric('precision')
def precision(ranks, is_pos, num_pos, k):
    return _hits(ranks, is_pos, k) / k


@register_metric('recall')
def recall(ranks, is_pos, num_pos, k):
    return _hits(ranks, is_pos, k) / num_pos


@register_metric('ndcg')
def ndcg(ranks, is_pos, num_pos, k):
    in_top = is_pos & (ranks < k)
    gain = torch.where(is_pos, 1.0 / torch.log2(ranks.float() + 2.0), torch.zeros((), device=ranks.device))
    idcg = torch.cumsum(1.0 / torch.log2(torch.arange(k, device=ranks.device, dtype=torch.float) + 2), 0)
    return (gain * in_top).sum(1) / idcg[torch.clamp(num_pos, max=k) - 1]


@register_metric('hit')
def hit(ranks, is_pos, num_pos, k):
    return (_hits(ranks, is_pos, k) > 0).float()


def metric_names(ks):
    """Every metric@K reported, in order: f'{name}@{k}' for each K and each registered metric."""
    return [f'{m}@{k}' for k in ks for m in METRICS]


def positive_ranks(scores, pos_mask, valid, return_scores=False):
    """0-based rank of every positive of every row, ties against positives. [R, C] -> ([R, Pm], mask [R, Pm])
    (and, with ``return_scores``, the positives' scores [R, Pm])."""
    R, C = scores.shape
    p_max = int(pos_mask.sum(1).max()) if R else 0
    # column of the j-th positive of each row, positives in column order (a cumulative count, no sort)
    r, c = pos_mask.nonzero(as_tuple=True)
    j = (pos_mask.cumsum(1) - 1)[r, c]
    pos_col = torch.zeros(R, p_max, dtype=torch.long, device=scores.device).index_put_((r, j), c)
    is_pos = torch.zeros(R, p_max, dtype=torch.bool, device=scores.device).index_put_((r, j), torch.ones_like(c,
                                                                                                   dtype=torch.bool))
    s_pos = torch.gather(scores, 1, pos_col).unsqueeze(-1)           # [R, Pm, 1]
    s = scores.unsqueeze(1)                                          # [R, 1, C]
    ok = valid.unsqueeze(1)
    ranks = ((s > s_pos) & ok).sum(-1)                               # valid candidates scored strictly higher
    ties = ((s == s_pos) & ok).sum(-1)                               # valid candidates scored equal, itself included
    if bool((ties[is_pos] > 1).any()):
        # some positive shares its score: a tied negative, or a tied positive in an earlier column, counts as ahead
        col = torch.arange(C, device=scores.device)
        ahead_if_tied = ~pos_mask.unsqueeze(1) | (col < pos_col.unsqueeze(-1))
        ranks = ranks + ((s == s_pos) & ok & ahead_if_tied).sum(-1)
    return (ranks, is_pos, s_pos.squeeze(-1)) if return_scores else (ranks, is_pos)


def row_counts(mask):
    """[R, C] bool -> ((row, col) of its True entries, row-major, and their count per row [R]). Counting by nonzero
    is several times faster on CPU than ``mask.sum(1)``, which widens the whole table to int64 first."""
    r, c = mask.nonzero(as_tuple=True)
    return r, c, torch.bincount(r, minlength=mask.size(0))


def all_true(mask):
    """Whether a bool table is all True; O(1) for the expanded scalar a FullSplit block passes as ``valid``."""
    if mask.numel() == 0:
        return True
    if all(st == 0 for st in mask.stride()):
        return bool(mask[(0,) * mask.dim()])
    return bool(mask.all())


def compact_rows(r, c, width, scores, pos_mask):
    """The kept candidates (r, c) of every row, in column order, left-aligned into [R, max width]: (scores,
    pos_mask, valid) of that narrow table (padding: -inf, not a positive, not valid). Ranks and ties among kept
    candidates are those of the wide table, column order (which breaks ties between positives) included."""
    j = torch.arange(len(r), device=r.device) - (torch.cumsum(width, 0) - width)[r]
    shape = (len(width), int(width.max()) if len(width) else 0)
    s = torch.full(shape, float('-inf'), dtype=scores.dtype, device=scores.device).index_put_((r, j), scores[r, c])
    p = torch.zeros(shape, dtype=torch.bool, device=r.device).index_put_((r, j), pos_mask[r, c])
    v = torch.zeros(shape, dtype=torch.bool, device=r.device).index_put_((r, j), torch.ones_like(r, dtype=torch.bool))
    return s, p, v


def metric_rows(scores, pos_mask, valid, ks, num_pos=None):
    """Per-row metrics of one batch: {k: {metric: [R] tensor}} (the paired bootstrap of scripts/tune.py uses them).
    ``num_pos`` [R]: the rows' positive counts when the caller already has them (a FullSplit's CSR), else counted."""
    if num_pos is None:
        num_pos = row_counts(pos_mask)[2]
    k_max = max(ks)
    if scores.size(1) > 8 * k_max:
        # Only a positive scored at least the k_max-th best valid score (kth) can be in any top-K, and only the
        # candidates scored above it, or tied with it, can be ahead of such a positive. So the positives at or above
        # kth are ranked exactly in a narrow table of the candidates above kth and those positives (column order
        # kept, which breaks ties between positives); a positive tied at kth then also has every non-positive tied
        # at kth ahead of it, added as a count. A few k_max-wide passes instead of a [rows, positives, C] table.
        all_valid = all_true(valid)
        masked = scores if all_valid else scores.masked_fill(~valid, float('-inf'))
        R = scores.size(0)
        top = masked.topk(k_max + 1, dim=1)
        kth = top.values[:, k_max - 1:k_max]
        # a row whose (k_max + 1)-th best score is below kth has exactly its k_max best at or above kth (kth is then
        # finite, so they are valid): taken from topk, no pass over the table. Rows tied there (or with fewer than
        # k_max finite valid scores) find theirs by one comparison over their own rows.
        exact = top.values[:, k_max] < kth[:, 0]
        rows = torch.arange(R, device=scores.device)
        r = rows[exact].repeat_interleave(k_max)
        c = torch.sort(top.indices[exact, :k_max], dim=1).values.reshape(-1)
        if not bool(exact.all()):
            tied = rows[~exact]
            sub = masked.index_select(0, tied)
            ge = sub >= kth[tied] if all_valid else (sub >= kth[tied]) & valid.index_select(0, tied)
            r_t, c_t = ge.nonzero(as_tuple=True)
            r, c = torch.cat([r, tied[r_t]]), torch.cat([c, c_t])
            order = torch.argsort(r * scores.size(1) + c)     # row-major, column order within a row
            r, c = r[order], c[order]
        # of the candidates at or above kth, the non-positives tied at kth are only counted
        tied_neg_entry = (masked[r, c] == kth[r, 0]) & ~pos_mask[r, c]
        tied_neg = torch.bincount(r[tied_neg_entry], minlength=R)
        keep = ~tied_neg_entry
        r, c = r[keep], c[keep]
        width = torch.bincount(r, minlength=R)
        ranks, is_pos, s_pos = positive_ranks(*compact_rows(r, c, width, scores, pos_mask), return_scores=True)
        ranks = ranks + (s_pos == kth) * tied_neg.unsqueeze(1)
    else:
        ranks, is_pos = positive_ranks(scores, pos_mask, valid)
    return {k: {name: fn(ranks, is_pos, num_pos, k) for name, fn in METRICS.items()} for k in ks}


@dataclass
class FullSplit:
    """Val or test rows under full ranking: every hashtag of the vocabulary is a candidate of every row, the row's
    own hashtags are its positives (CSR ``pos_ptr`` / ``pos_idx``), nothing is masked. Candidates are never stored:
    a block of rows is scored against ``arange(H)`` and its [rows, H] positive mask made when it is scored, so
    memory is bounded by the block, not by rows x hashtags."""
    users: torch.Tensor     # [R]
    videos: torch.Tensor    # [R]
    pos_ptr: torch.Tensor   # [R + 1]
    pos_idx: torch.Tensor   # [sum of positives]
    num_hashtag: int
    order: torch.Tensor = None   # [R] the split's row index of each row held here (``full_split`` groups by user)

    def __len__(self):
        return len(self.users)

    def to(self, device):
        return FullSplit(self.users.to(device), self.videos.to(device), self.pos_ptr.to(device),
                         self.pos_idx.to(device), self.num_hashtag, None if self.order is None else self.order.cpu())

    def block(self, lo, hi):
        """Rows [lo, hi) as (users, videos, candidates [n, H] (a view of arange), pos_mask [n, H], valid [n, H])."""
        H, dev = self.num_hashtag, self.users.device
        n = hi - lo
        a, b = int(self.pos_ptr[lo]), int(self.pos_ptr[hi])
        row = torch.repeat_interleave(torch.arange(n, device=dev), self.pos_ptr[lo + 1:hi + 1] - self.pos_ptr[lo:hi])
        pos = torch.zeros(n, H, dtype=torch.bool, device=dev)
        pos[row, self.pos_idx[a:b]] = True
        return (self.users[lo:hi], self.videos[lo:hi], torch.arange(H, device=dev).expand(n, H), pos,
                torch.ones((), dtype=torch.bool, device=dev).expand(n, H))


def full_split(data, split):
    """The rows of an EvalSplit (``data.val`` / ``data.test``) under full ranking: positives = the post's hashtags.

    The rows are held grouped by user (stable; ``order`` maps them back): a block of rows then holds fewer distinct
    users, and a scorer whose hashtag side depends on the user (GCN-PHR's) computes that side once per user of a
    block. Means are over the same rows; ``evaluate_rows`` returns per-row metrics in the split's own row order."""
    from data_load import csr_gather
    order = torch.sort(split.users.cpu(), stable=True).indices
    videos = split.videos.cpu()[order]
    owner, tags = csr_gather(data.vh_ptr.numpy(), data.vh_idx.numpy(), videos.numpy())
    # each (row, hashtag) once, so that ``pos_ptr`` counts a row's positives exactly (``metric_rows``' num_pos)
    key = np.unique(owner.astype(np.int64) * data.num_hashtag + tags)
    owner, tags = key // data.num_hashtag, key % data.num_hashtag
    counts = torch.bincount(torch.from_numpy(owner), minlength=len(split))
    ptr = torch.zeros(len(split) + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(counts, 0)
    return FullSplit(split.users.cpu()[order], videos, ptr, torch.from_numpy(tags).long(), data.num_hashtag, order)


def _rows(split, lo, hi):
    """(users, videos, candidates, pos_mask, valid) of rows [lo, hi) of an EvalSplit or a FullSplit."""
    if isinstance(split, FullSplit):
        return split.block(lo, hi)
    sl = slice(lo, hi)
    return split.users[sl], split.videos[sl], split.candidates[sl], split.pos_mask[sl], split.valid[sl]


def _batches(model, split, ks, batch_size, enc, lo, hi, variants=None):
    """Per-row metrics of rows [lo, hi) of a split, one batch at a time (see ``metric_rows``): a list per batch,
    in row order, one entry per score variant (``evaluate_variants``; without ``variants``, the one of the model).
    A sampled split's rows are scored on their candidates (``model.score``), a full-ranking split's on every hashtag
    (``model.score_all``; a variant is called with ``hashtags`` None). Full-ranking blocks on a CPU are scored by
    ``block_threads`` threads at once."""
    full = isinstance(split, FullSplit)
    if variants is not None:
        score = (lambda enc, users, posts, candidates: variants(enc, users, posts, None)) if full else variants
    elif full:
        score = lambda enc, users, posts, candidates: [model.score_all(enc, users, posts)]  # noqa: E731
    else:
        score = lambda enc, users, posts, candidates: [model.score(enc, users, posts, candidates)]  # noqa: E731

    def batch(s):
        e = min(s + batch_size, hi)
        users, videos, candidates, pos_mask, valid = _rows(split, s, e)
        num_pos = split.pos_ptr[s + 1:e + 1] - split.pos_ptr[s:e] if full else None
        per = []
        for scores in score(enc, users, Posts(ids=videos), candidates):
            scores = scores.float()
            if not bool(torch.isfinite(scores.sum())):   # one reduction; the table is rewritten only if needed
                scores = torch.nan_to_num(scores, nan=float('-inf'))  # a NaN score must not win a comparison
            per.append(metric_rows(scores, pos_mask, valid, ks, num_pos))
        return per

    starts = range(lo, hi, batch_size)
    workers = block_threads(split, len(starts))
    if workers > 1:
        yield from _in_threads(batch, starts, workers)
    else:
        for s in starts:
            yield batch(s)


def block_threads(split, num_blocks):
    """Threads that score a split's blocks at once: under full ranking on a CPU, one per intra-op thread
    (``torch.get_num_threads()``), each running its ops on one thread. A block's work is many calls on one
    [H, d] or [rows, H] table each (GCN-PHR's per-user scorer makes three per distinct user), too short for two
    OpenMP threads to share well; whole blocks per thread are not (results/tried/full_ranking_scorer.md). Per-row
    values equal those of the blocks scored one after another (tests/test_full_rank.py); elsewhere (a GPU, the
    sampled protocol, one thread) blocks do run one after another."""
    if not isinstance(split, FullSplit) or split.users.is_cuda or num_blocks < 2:
        return 1
    return min(torch.get_num_threads(), num_blocks)


def _in_threads(fn, items, workers):
    """``fn(item)`` for each item, by ``workers`` threads whose torch ops run on one thread each, under the caller's
    autograd mode; results yielded in item order. The intra-op thread count is restored afterwards."""
    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()

    def run(item):
        with torch.set_grad_enabled(grad):
            return fn(item)

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:   # fresh threads: they start with one intra-op thread
            yield from pool.map(run, items)
    finally:
        torch.set_num_threads(threads)


# rows of a full-ranking block: about this many (row, hashtag) scores at once (16 MB of float32 scores; the rank
# computation holds [rows, positives, H] booleans of the block)
FULL_BLOCK_SCORES = 1 << 22


def _prepare(model, split, batch_size, enc):
    if batch_size is None:
        batch_size = 2048 if split.users.is_cuda else 256
    if isinstance(split, FullSplit):
        batch_size = max(1, min(batch_size, FULL_BLOCK_SCORES // split.num_hashtag))
    was_training = model.training
    model.eval()
    return batch_size, was_training, (model.encode() if enc is None else enc)


@torch.no_grad()
def evaluate_rows(model, split, ks=(10,), batch_size=None, enc=None):
    """Per-row metrics of ``model`` over an EvalSplit: {f'{metric}@{k}': [R] float tensor on the CPU}."""
    batch_size, was_training, enc = _prepare(model, split, batch_size, enc)
    parts = {f'{m}@{k}': [] for k in ks for m in METRICS}
    for (per_k,) in _batches(model, split, ks, batch_size, enc, 0, len(split)):
        for k, per in per_k.items():
            for m, v in per.items():
                parts[f'{m}@{k}'].append(v.cpu())
    model.train(was_training)
    out = {name: torch.cat(v) for name, v in parts.items()}
    order = getattr(split, 'order', None)
    if order is not None:   # back to the split's row order (a FullSplit holds its rows grouped by user)
        for name, v in out.items():
            out[name] = torch.empty_like(v).index_copy_(0, order, v)
    return out


@torch.no_grad()
def evaluate(model, split, ks=(5, 10), batch_size=None, enc=None, shard=None):
    """Mean metrics of ``model`` over an EvalSplit (already on the model's device): {f'{metric}@{k}': value}.

    ``shard = (rank, world)`` (data-parallel runs, torch.distributed initialised): this process scores its
    contiguous share of the rows and the sums are all-reduced, so every process returns the same means.

    Propagates once (``model.encode()``, unless ``enc`` is given), then scores the rows in batches. Default batch:
    256 rows on CPU (the graph models' scorer splits a batch further into cache-sized blocks itself; larger
    batches only grow the metric code's temporaries), 2,048 on a GPU.
    """
    return evaluate_variants(model, split, None, 1, ks, batch_size, enc, shard)[0]


@torch.no_grad()
def evaluate_variants(model, split, variants, n, ks=(5, 10), batch_size=None, enc=None, shard=None):
    """``evaluate`` for several scorings of the same rows at once: ``variants(enc, users, posts, candidates)``
    (``candidates`` None under full ranking: every hashtag) returns a list of ``n`` [B, C] score tensors, and the result is a list of ``n`` metric dicts in that order
    (``variants`` None: ``model.score``, n = 1). What the variants share (propagation, the expensive part of a score) is
    computed once per batch, e.g. the count-weight factors of GCN-PHR+'s calibration (``phr/training/hooks.py``)."""
    batch_size, was_training, enc = _prepare(model, split, batch_size, enc)
    lo, hi = 0, len(split)
    if shard is not None:
        rank, world = shard
        lo, hi = len(split) * rank // world, len(split) * (rank + 1) // world
    totals = [{k: dict.fromkeys(METRICS, 0.0) for k in ks} for _ in range(n)]
    for per in _batches(model, split, ks, batch_size, enc, lo, hi, variants):
        for t, per_k in zip(totals, per):
            for k, m_v in per_k.items():
                for m, v in m_v.items():
                    t[k][m] += v.sum().item()
    model.train(was_training)
    if shard is not None:
        import torch.distributed as dist
        flat = torch.tensor([t[k][m] for t in totals for k in ks for m in METRICS], dtype=torch.float64,
                            device=split.users.device)
        dist.all_reduce(flat)
        it = iter(flat.tolist())
        totals = [{k: {m: next(it) for m in METRICS} for k in ks} for _ in totals]
    return [{f'{m}@{k}': t[k][m] / len(split) for k in ks for m in METRICS} for t in totals]


def selection_key(metrics, by='recall@10'):
    """What checkpoint selection maximises, on validation metrics only: the metric ``by`` (``train.py --select``,
    Recall@10 by default), exact ties (common on small validation splits) broken by NDCG at the same K (by Recall@K
    when ``by`` is NDCG)."""
    k = by.rpartition('@')[2]
    tie = f'ndcg@{k}' if not by.startswith('ndcg@') else f'recall@{k}'
    return metrics[by], metrics[tie]


def best_by_validation(records, val=lambda r: r['val'], by='recall@10'):
    """The record of best ``selection_key`` on its validation metrics (first of equals): the one rule by which an
    epoch of a run and a configuration of a sweep are chosen."""
    best = None
    for r in records:
        if best is None or selection_key(val(r), by) > selection_key(val(best), by):
            best = r
    return best


def evaluate_splits(model, splits, ks, batch_size=None, shard=None, enc=None):
    """{split name: metrics} for every EvalSplit given, from one propagation (``enc``, or one made here; rows
    shared out with ``shard``)."""
    model.eval()
    if enc is None:
        with torch.no_grad():
            enc = model.encode()
    return {name: evaluate(model, split, ks, batch_size, enc=enc, shard=shard) for name, split in splits.items()}
