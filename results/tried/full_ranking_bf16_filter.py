"""Tried, not adopted (results/tried/full_ranking_scorer.md): exact full ranking of a dot-product scorer
q . e_h + b_h through a certified bf16 filter, against the fp32 path that evaluation.py uses.

Filter, per block of rows: one bf16 matmul of the augmented vectors [q, 1, c|q|, c] . [e_h, b_h, |e_h|, |b_h|]
gives, for c >= 4u (u = 2^-8, bf16's unit roundoff; c = 5u here), an upper bound A >= q . e_h + b_h on every exact score;
the exact scores of the k_max best bounds give T <= the k_max-th best exact score; only candidates with A >= T
(T rounded down to bf16) can be at or above it, so they alone are rescored in fp32 and ranked by
evaluation.metric_rows on a narrow table (column order kept). Ranks are exact; NDCG can differ by an ulp
(its gains are summed over another table shape).

    python results/tried/full_ranking_bf16_filter.py                        # random embeddings
    python results/tried/full_ranking_bf16_filter.py --data_path Data/howyoutag_makers --checkpoint runs/ConTagNet/best.pt
"""
import argparse
import os
import time

import torch

from evaluation import metric_rows

U = 2.0 ** -8


def augment(Q, E, b, c=5 * U):
    qa = torch.cat([Q, torch.ones(len(Q), 1), c * Q.norm(dim=1, keepdim=True), torch.full((len(Q), 1), c)], 1)
    ea = torch.cat([E, b[:, None], E.norm(dim=1, keepdim=True), b.abs()[:, None]], 1)
    return qa.to(torch.bfloat16), ea.to(torch.bfloat16).t().contiguous()


def _num_pos(pos_ptr, lo, hi):
    return pos_ptr[lo + 1:hi + 1] - pos_ptr[lo:hi]


def exact_block(Q, E, b, lo, hi, pos_ptr, pos_idx, ks):
    s = torch.addmm(b, Q[lo:hi], E.T)
    n, H = s.shape
    row = torch.repeat_interleave(torch.arange(n), _num_pos(pos_ptr, lo, hi))
    pos = torch.zeros(n, H, dtype=torch.bool)
    pos[row, pos_idx[pos_ptr[lo]:pos_ptr[hi]]] = True
    return metric_rows(s, pos, torch.ones((), dtype=torch.bool).expand(n, H), ks, _num_pos(pos_ptr, lo, hi))


def filtered_block(Q, E, b, qa, eaT, lo, hi, pos_ptr, pos_idx, ks, stats):
    A = torch.mm(qa[lo:hi], eaT)                                   # [n, H] bf16 upper bounds
    n, H = A.shape
    top = A.topk(max(ks), dim=1).indices
    q = Q[lo:hi]
    T = ((q.unsqueeze(1) * E[top]).sum(-1) + b[top]).min(1).values  # <= the k_max-th best exact score
    Tb = (T - T.abs() * 2 ** -7 - 1e-30).to(torch.bfloat16)        # rounded down, conservatively
    r, c = (A >= Tb[:, None]).nonzero(as_tuple=True)                # row-major: column order within a row
    stats['survivors'] += len(r)
    stats['rows'] += n
    s = (q[r] * E[c]).sum(-1) + b[c]
    width = torch.bincount(r, minlength=n)
    prow = torch.repeat_interleave(torch.arange(n), _num_pos(pos_ptr, lo, hi))
    is_pos = torch.isin(r * H + c, prow * H + pos_idx[pos_ptr[lo]:pos_ptr[hi]])
    j = torch.arange(len(r)) - (torch.cumsum(width, 0) - width)[r]
    shape = (n, int(width.max()))
    S = torch.full(shape, float('-inf')).index_put_((r, j), s)
    P = torch.zeros(shape, dtype=torch.bool).index_put_((r, j), is_pos)
    V = torch.zeros(shape, dtype=torch.bool).index_put_((r, j), torch.ones_like(r, dtype=torch.bool))
    return metric_rows(S, P, V, ks, _num_pos(pos_ptr, lo, hi))


def compare(Q, E, b, pos_ptr, pos_idx, ks=(5, 10), block=188, reps=3):
    out = {}
    for name in ('exact', 'filtered'):
        best, stats = float('inf'), None
        for _ in range(reps):
            t = time.perf_counter()
            stats, per = {'survivors': 0, 'rows': 0}, []
            qa, eaT = augment(Q, E, b) if name == 'filtered' else (None, None)
            for lo in range(0, len(Q), block):
                hi = min(lo + block, len(Q))
                per.append(exact_block(Q, E, b, lo, hi, pos_ptr, pos_idx, ks) if name == 'exact' else
                           filtered_block(Q, E, b, qa, eaT, lo, hi, pos_ptr, pos_idx, ks, stats))
            best = min(best, time.perf_counter() - t)
        out[name] = ({k: {m: torch.cat([p[k][m] for p in per]) for m in per[0][k]} for k in ks}, best, stats)
    ex, fi = out['exact'][0], out['filtered'][0]
    diff = {f'{m}@{k}': (int((ex[k][m] != fi[k][m]).sum()), float((ex[k][m] - fi[k][m]).abs().max()))
            for k in ks for m in ex[k]}
    st = out['filtered'][2]
    print(f"exact {out['exact'][1]:.3f} s, filtered {out['filtered'][1]:.3f} s, "
          f"survivors per row {st['survivors'] / max(1, st['rows']):.1f}; rows differing (count, max abs): {diff}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data_path')
    p.add_argument('--checkpoint', help='a trained dot-product baseline (query / hashtag_vectors), e.g. ConTagNet')
    args = p.parse_args()
    if args.checkpoint:
        from checkpoint import load_checkpoint
        from data_load import load_dataset
        from evaluation import full_split
        data = load_dataset(args.data_path)
        model, _ = load_checkpoint(args.checkpoint, data)
        model.eval()
        with torch.no_grad():
            enc = model.encode()
            E, b = model.hashtag_vectors()
            b = b if torch.is_tensor(b) else torch.zeros(E.size(0))
            for name in ('val', 'test'):
                sp = full_split(data, getattr(data, name))
                print(name, end=': ')
                compare(model.query(enc, sp.users, sp.videos).float(), E.float(), b.float(), sp.pos_ptr, sp.pos_idx)
        return
    torch.manual_seed(0)
    R, H, d = 6221, 22301, 64
    E = torch.randn(H, d) * (1 + torch.rand(H, 1))
    b = torch.randn(H) * 0.5
    npos = torch.randint(1, 5, (R,))
    pos_ptr = torch.zeros(R + 1, dtype=torch.long)
    pos_ptr[1:] = npos.cumsum(0)
    pos_idx = torch.cat([torch.randperm(H)[:k] for k in npos.tolist()])
    Q = torch.randn(R, d) + 0.5 * E[pos_idx[pos_ptr[:-1]]]
    compare(Q, E, b, pos_ptr, pos_idx)


if __name__ == '__main__':
    main()
