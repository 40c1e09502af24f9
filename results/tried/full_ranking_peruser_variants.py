"""Tried, not adopted (results/tried/full_ranking_scorer.md): variants of GCN-PHR's full-ranking per-user loop
(model.Scorer._score_every_hashtag: per distinct user, uh = LeakyReLU(T + q_u) [H, d], then that user's rows @ uh.T),
timed interleaved, 5 repetitions each (min / median / all), at the makers' split's shape (2,592 users, 6,276 rows,
H = 22,301, d = 64), random values. On a noisy VM read the minima and the spread.

    OMP_NUM_THREADS=2 python results/tried/full_ranking_peruser_variants.py
"""
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

torch.manual_seed(0)
H, D = 22301, 64
N_ROWS = [2] * 1500 + [3] * 600 + [1] * 492          # rows per user
USERS, R = len(N_ROWS), sum(N_ROWS)
STARTS = [0]
for n in N_ROWS:
    STARTS.append(STARTS[-1] + n)


def per_user(dtype=torch.float32, product='mm_NT'):
    T, q = torch.randn(H, D).to(dtype), torch.randn(USERS, D).to(dtype)
    uv = torch.randn(R, D).to(dtype)
    ws, out, outT = torch.empty(H, D, dtype=dtype), torch.empty(R, H, dtype=dtype), torch.empty(H, 8, dtype=dtype)
    t0 = time.perf_counter()
    for g in range(USERS):
        a, b = STARTS[g], STARTS[g + 1]
        uh = F.leaky_relu_(torch.add(T, q[g], out=ws))
        if product == 'mm_NT':         # as in model.py
            torch.mm(uv[a:b], uh.T, out=out[a:b])
        elif product == 'mm_NN':       # [H, d] @ [d, n], written back transposed
            torch.mm(uh, uv[a:b].T, out=outT[:, :b - a])
            out[a:b].copy_(outT[:, :b - a].T)
        elif product == 'mv':          # one matrix-vector product per row
            for i in range(a, b):
                torch.mv(uh, uv[i], out=out[i])
    return time.perf_counter() - t0


def grouped(m=32, hc=512, maxn=3):
    """m users at a time, hashtags in chunks of hc: the [m, hc, d] block is built and consumed by one bmm while
    it is in cache (rows padded to maxn per user)."""
    T, q, uv = torch.randn(H, D), torch.randn(USERS, D), torch.randn(R + 1, D)
    idx = torch.full((USERS, maxn), R, dtype=torch.long)
    for g in range(USERS):
        idx[g, :N_ROWS[g]] = torch.arange(STARTS[g], STARTS[g + 1])
    ws, tmp, out_pad = torch.empty(m * hc * D), torch.empty(m * maxn * hc), torch.empty(USERS * maxn, H)
    t0 = time.perf_counter()
    for g0 in range(0, USERS, m):
        g1 = min(g0 + m, USERS)
        uvp, qs = uv[idx[g0:g1]], q[g0:g1].unsqueeze(1)
        op = out_pad[g0 * maxn:g1 * maxn].view(g1 - g0, maxn, H)
        for c in range(0, H, hc):
            w = min(hc, H - c)
            uh = F.leaky_relu_(torch.add(T[c:c + w].unsqueeze(0), qs, out=ws[:(g1 - g0) * w * D].view(-1, w, D)))
            t = torch.bmm(uvp, uh.transpose(1, 2), out=tmp[:(g1 - g0) * maxn * w].view(-1, maxn, w))
            op[:, :, c:c + w].copy_(t)
    return time.perf_counter() - t0


def in_threads(workers=2, blocks=34):
    """Adopted (evaluation.block_threads): the users in ``blocks`` blocks, scored by ``workers`` threads at once,
    each running its ops on one thread, as in model.py otherwise."""
    T, q, uv = torch.randn(H, D), torch.randn(USERS, D), torch.randn(R, D)
    out, local = torch.empty(R, H), threading.local()
    bounds = [USERS * i // blocks for i in range(blocks + 1)]

    def block(i):
        ws = getattr(local, 'ws', None)
        if ws is None:
            ws = local.ws = torch.empty(H, D)
        for g in range(bounds[i], bounds[i + 1]):
            a, b = STARTS[g], STARTS[g + 1]
            torch.mm(uv[a:b], F.leaky_relu_(torch.add(T, q[g], out=ws)).T, out=out[a:b])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(block, range(blocks)))
    t = time.perf_counter() - t0
    torch.set_num_threads(threads)
    return t


VARIANTS = {
    'fp32, 2 threads x 1 op thread (adopted)': lambda: in_threads(),
    'fp32, mm_NT (model.py)': lambda: per_user(),
    'fp32, mm_NN + transposed copy': lambda: per_user(product='mm_NN'),
    'fp32, mv per row': lambda: per_user(product='mv'),
    'bf16, mm_NT': lambda: per_user(torch.bfloat16),
    'fp32, grouped 32 users x 512 hashtags': lambda: grouped(32, 512),
    'fp32, grouped 64 users x 256 hashtags': lambda: grouped(64, 256),
}

if __name__ == '__main__':
    times = {k: [] for k in VARIANTS}
    for _ in range(5):
        for k, f in VARIANTS.items():
            times[k].append(f())
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    for k, v in times.items():
        print(f'{k:40s} min {min(v):.3f} s  median {statistics.median(v):.3f} s  ({" ".join(f"{x:.2f}" for x in v)})')
