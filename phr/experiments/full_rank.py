"""Test metrics of given checkpoints under both protocols, side by side: the row's 1,000 sampled negatives and full
ranking (every hashtag of the vocabulary a candidate; SPEC §4). A diagnostic of checkpoints selected under either
protocol; ``train.py --protocol full`` selects under full ranking itself.

    python scripts/full_rank.py --data_path Data/howyoutag_makers \\
        GCN_PHR=runs/tune/howyoutag_makers/GCN_PHR/seed_3_s0/best.pt,runs/tune/howyoutag_makers/GCN_PHR/seed_3_s1/best.pt \\
        GCN_PHR_plus=runs/tune/howyoutag_makers/GCN_PHR_plus/search_3_s0/best.pt

Each argument is LABEL=CHECKPOINT[,CHECKPOINT...] (e.g. one per seed); the user-frequency and global-popularity
floors are always added. Prints, per label, test Recall@10 / NDCG@10 with the sampled candidates and with every
hashtag, mean ± std over its checkpoints, and the paired bootstrap (over test rows, seed-averaged rows) of each
label minus the user-frequency floor under full ranking. Why it matters: with 22,301 hashtags and 1,000 sampled
negatives, a #HowYouTagTweets test row holds only about 8% of its user's earlier hashtags, so a candidate the user
has used is a positive about 44% of the time; where the vocabulary is smaller than the sample (the generated presets
at small scale) the rows already hold every hashtag and the two protocols agree.

``--calibrate_full``: for every checkpoint with a count term (GCN_PHR_plus), one more row, LABEL@full_val: its count
weight refitted on the *validation* rows under full ranking (each factor of ``--scales`` times the weight as
trained, kept by ``phr.training.hooks.best_scale``: best Recall@10, ties NDCG@10, then the factor nearest 1), as
--calibrate_counts fits it on the sampled validation rows. Selection stays on validation; it asks whether the
sampled protocol's calibration is what costs the model under full ranking. Only the count weight is refitted, and
only for models that have one: it is a diagnostic of that one scale, not a protocol that every model went through.
"""
import argparse
import copy
import os
import time


import numpy as np
import torch

from data_load import DataError, load_dataset
from evaluation import evaluate_rows, evaluate_variants, full_split
from phr.training.checkpoint import CheckpointError, load_checkpoint
from phr.training.hooks import best_scale, count_weight_variants
from phr.models.registry import build_model
from phr.util.runtime import resolve_device
from phr import ROOT

FLOORS = ('user_popularity', 'popularity')


@torch.no_grad()
def full_rank_rows(model, data, split, device='cpu', rows=None):
    """Per-row Recall@10 / NDCG@10 of ``model`` over ``split`` with every hashtag a candidate: {metric: [R] array}
    (``evaluation.full_split``: train.py --protocol full scores the same way; ``rows`` per block)."""
    per = evaluate_rows(model, full_split(data, split).to(device), ks=(10,), batch_size=rows)
    return {m: per[m].numpy() for m in ('recall@10', 'ndcg@10')}


# factors of the trained count weight tried by --calibrate_full: the sampled calibration's grid and beyond it, as the
# sampled calibration keeps its largest factor (x8) on both #HowYouTagTweets splits
FULL_SCALES = (1, 2, 3, 5, 8, 12, 20, 32)


@torch.no_grad()
def calibrate_full(model, data, split, scales=FULL_SCALES, device='cpu', rows=None, trained=None):
    """Refit ``model``'s count weight on ``split`` (validation) under full ranking and leave it set: the factor of
    ``scales`` x the weight as trained (``trained``, the checkpoint's ``count_weight_trained``; None: the model's
    weight as it is) that ``phr.training.hooks.best_scale`` keeps (Recall@10, NDCG@10, nearest 1). All factors are scored from
    one pass (``phr.training.hooks.count_weight_variants``). Returns (factor, the trained weight, [(factor, full-ranking R@10,
    NDCG@10), ...])."""
    w = model.count_weight
    w0 = torch.full_like(w, trained) if trained is not None else w.detach().clone()
    variants = count_weight_variants(model, [w0 * f for f in scales])
    model.eval()
    got = evaluate_variants(model, full_split(data, split).to(device), variants, len(scales), ks=(10,),
                            batch_size=rows)
    table = [(float(f), m['recall@10'], m['ndcg@10']) for f, m in zip(scales, got)]
    factor = best_scale([(f, {'recall@10': r, 'ndcg@10': n}) for f, r, n in table])[0]
    w.copy_(w0 * factor)
    return factor, float(w0), table


def parse_models(specs):
    out = {}
    for spec in specs:
        label, sep, paths = spec.partition('=')
        if not sep or not label or not paths:
            raise SystemExit(f'error: {spec!r}: expected LABEL=CHECKPOINT[,CHECKPOINT...]')
        if label in FLOORS or label.endswith('@full_val'):
            raise SystemExit(f'error: {spec!r}: the label {label} is reserved ({" and ".join(FLOORS)} are the floors '
                             f'every table is measured against, LABEL@full_val the refitted rows); name it otherwise')
        if label in out:
            raise SystemExit(f'error: the label {label} is given twice; join its checkpoints with commas')
        out[label] = paths.split(',')
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='*', help='LABEL=CHECKPOINT[,CHECKPOINT...]')
    p.add_argument('--data_path', required=True)
    p.add_argument('--split', default='test', choices=('test', 'val'))
    p.add_argument('--device', default='cpu')
    p.add_argument('--rows', type=int, default=None, help='rows per block of the full [rows, hashtags] score table '
                                                          '(default: evaluation.FULL_BLOCK_SCORES / hashtags)')
    p.add_argument('--calibrate_full', action='store_true',
                   help='also each count-term model with its count weight refitted on full-ranking validation '
                        '(rows LABEL@full_val; see above)')
    p.add_argument('--scales', nargs='+', type=float, default=FULL_SCALES,
                   help='factors of the trained count weight tried by --calibrate_full')
    return p


def run(args):
    if args.calibrate_full and args.split != 'test':
        build_parser().error('--calibrate_full fits on the validation rows; it reports --split test only')
    if any(not (0 < f < float('inf')) for f in args.scales):
        build_parser().error('--scales: every factor must be a finite number > 0')
    if args.rows is not None and args.rows < 1:
        raise SystemExit(f'error: --rows must be at least 1, got {args.rows}')
    try:
        args.device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    from phr.sweep.stats import paired_bootstrap, verdict
    try:
        data = load_dataset(args.data_path, verbose=False)
        split = getattr(data, args.split)
        groups = {name: [build_model(name, data).to(args.device).eval()] for name in FLOORS}
        bests = {}   # label -> each checkpoint's 'best' record (its trained and sampled-calibrated count weight)
        for label, paths in parse_models(args.models).items():
            loaded = [load_checkpoint(path, data, args.device) for path in paths]
            groups[label] = [model.eval() for model, _ in loaded]
            bests[label] = [ckpt.get('best') or {} for _, ckpt in loaded]
    except (DataError, CheckpointError) as e:
        raise SystemExit(f'error: {e}')
    if args.calibrate_full:
        floor_val = full_rank_rows(groups['user_popularity'][0], data, data.val, args.device, args.rows)
        print(f"user_popularity: full-ranking validation R@10 / NDCG@10 {floor_val['recall@10'].mean():.4f} / "
              f"{floor_val['ndcg@10'].mean():.4f}", flush=True)
        for label in bests:
            fitted = []
            for model, best in zip(groups[label], bests[label]):
                if getattr(model, 'count_weight', None) is None:
                    continue
                model = copy.deepcopy(model)
                factor, w0, table = calibrate_full(model, data, data.val, tuple(args.scales), args.device, args.rows,
                                                   best.get('count_weight_trained'))
                sampled = best.get('count_scale')
                print(f'{label}: count weight {w0:.3f} as trained; full-ranking validation R@10 / NDCG@10: '
                      + ', '.join(f'x{f:g} {r:.4f} / {n:.4f}' for f, r, n in table) + f'; kept x{factor:g}'
                      + (f' (sampled validation kept x{sampled:g})' if sampled is not None else ''), flush=True)
                fitted.append(model)
            if fitted:
                groups[f'{label}@full_val'] = fitted
    results, t0, on_device = {}, time.perf_counter(), split.to(args.device)
    for label, models in groups.items():
        sampled = [evaluate_rows(m, on_device, ks=(10,)) for m in models]
        full = [full_rank_rows(m, data, split, args.device, args.rows) for m in models]
        results[label] = {'sampled': {k: np.stack([s[k].numpy() for s in sampled]) for k in ('recall@10', 'ndcg@10')},
                          'full': {k: np.stack([f[k] for f in full]) for k in ('recall@10', 'ndcg@10')}}
        print(f"{label}: full R@10 {results[label]['full']['recall@10'].mean():.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f'{args.data_path} {args.split}: {len(split)} rows, {data.num_hashtag} hashtags '
          f'(sampled rows: {int(split.valid.sum(1).float().mean())} candidates on average)')
    print('| model | checkpoints | sampled R@10 | sampled NDCG@10 | full R@10 | full NDCG@10 | full R@10 − floor '
          '[95% CI] | full NDCG@10 − floor [95% CI] |')
    print('|---' * 8 + '|')
    floor = results['user_popularity']['full']
    for label, res in results.items():
        cells = [f'{res[p][m].mean(1).mean():.4f} ± {res[p][m].mean(1).std():.4f}' for p in ('sampled', 'full')
                 for m in ('recall@10', 'ndcg@10')]
        for m in ('recall@10', 'ndcg@10'):
            if label == 'user_popularity':
                cells.append('(floor)')
            else:
                d, lo, hi = paired_bootstrap(res['full'][m], np.repeat(floor[m][:1], len(res['full'][m]), 0))
                cells.append(f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}] {verdict(lo, hi)}')
        print(f'| {label} | {len(groups[label])} | ' + ' | '.join(cells) + ' |')
    return results
