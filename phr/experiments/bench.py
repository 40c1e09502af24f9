"""Training-step and evaluation speed of the graph models at full scale, next to the projection-matmul floor.

    python scripts/bench.py                                   # Data/yfcc100m (generated if absent), CPU or CUDA
    python scripts/bench.py --device cuda --models GCN_PHR Net --aggr_modes mean max add
    python scripts/bench.py --data_path Data/instagram --steps 5
    python scripts/bench.py --models GCN_PHR GCN_PHR_plus GCN_PHR_plus:sampled_softmax:8   # a loss, K negatives
    python scripts/bench.py --data_path Data/howyoutag --full GCN_PHR GCN_PHR_plus kNN ConTagNet   # full-ranking validation vs an epoch

Per model / aggr_mode: seconds per training step (forward + backward + Adam) at ``--batch_size``, the forward
time of its three parts (video projection, propagation, scoring of the batch), seconds per epoch (step x steps
per epoch), evaluation seconds for the whole test split and rows per second, and peak memory (process peak RSS
on CPU, torch.cuda.max_memory_allocated on CUDA). The floor is the unavoidable part: the projection of the
training graph's video features, [Vg, F] @ [F, d], forward and backward, timed alone on the same device.
Timings are medians over ``--steps`` after one warm-up step, measured with time.perf_counter (CUDA synchronised).
A model is timed with BPR against one negative per row (the authors' step) unless it is given as
``NAME:LOSS:K``: train.py's ``--loss LOSS`` (a candidate loss: bpr, hard_bpr, sampled_softmax) with
``--num_train_neg K`` negatives per row, e.g. the configuration GCN_PHR_plus was selected with on yfcc100m.
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time


import torch

from data_load import load_dataset
from evaluation import evaluate
from phr.training.losses import CANDIDATE_LOSSES, LOSSES
from model import AGGR, GraphModel
from phr.core.base import Posts, Recommender
from phr.models.registry import MODELS, build_model
from phr.util.runtime import cpu_name, keep_freed_memory, resolve_device
from phr.training.sampling import TripleSampler
from phr import ROOT


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeat):
    fn()   # warm-up
    sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_gb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB on Linux


def describe(device):
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}'
    return f'CPU {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}'


GRAPH_MODELS = tuple(n for n, s in MODELS.items() if issubclass(s.cls, GraphModel))


def model_spec(text):
    """``NAME`` or ``NAME:LOSS:K`` -> (name, loss, K); an argparse type, so a bad one is one clear error."""
    name, *rest = text.split(':')
    if name not in GRAPH_MODELS:
        raise argparse.ArgumentTypeError(f'{text!r}: model {name!r} is not a graph model ({", ".join(GRAPH_MODELS)})')
    if not rest:
        return name, 'bpr', 1
    if len(rest) != 2 or rest[0] not in CANDIDATE_LOSSES or not rest[1].isdigit() or int(rest[1]) < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: write NAME:LOSS:K, LOSS one of {", ".join(CANDIDATE_LOSSES)} '
                                         f'and K >= 1 negatives per row')
    return name, rest[0], int(rest[1])


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data_path', default=os.path.join('Data', 'yfcc100m'))
    p.add_argument('--models', nargs='+', default=[('GCN_PHR', 'bpr', 1)], type=model_spec, metavar='NAME[:LOSS:K]',
                   help=f'graph models ({", ".join(GRAPH_MODELS)}), each optionally at a loss and number of '
                        f'negatives (default bpr:1)')
    p.add_argument('--aggr_modes', nargs='+', default=['mean'], choices=tuple(AGGR))
    p.add_argument('--device', default='auto')
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--dim_latent', type=int, default=64)
    p.add_argument('--steps', type=int, default=3, help='timed repetitions (after one warm-up)')
    p.add_argument('--eval_batch', type=int, default=None, help='default: 256 on CPU, 2048 on GPU')
    p.add_argument('--keep_freed_memory', action=argparse.BooleanOptionalAction, default=True,
                   help="glibc malloc keeps freed memory (train.py's default); --no-keep_freed_memory to compare")
    p.add_argument('--nproc', nargs='+', type=int, default=None,
                   help='instead of the step table: one training epoch through torchrun with each of these numbers '
                        'of processes (data-parallel, train.py), e.g. --nproc 1 2; prints seconds per epoch')
    p.add_argument('--full', nargs='+', default=None, metavar='MODEL',
                   help='instead of the step table: full-ranking validation (every hashtag a candidate, '
                        '--protocol full) of these models (any of the registry) against their training epoch')
    p.add_argument('--keep_zero_columns', action='store_true',
                   help='project all feature columns, also those zero for every post (to measure what leaving them '
                        'out saves, e.g. on imported posts without visual/acoustic features)')
    return p


def run(args):
    if args.steps < 1:
        build_parser().error('--steps must be at least 1')
    for flag in ('batch_size', 'dim_latent', 'eval_batch'):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            build_parser().error(f'--{flag} must be positive, got {getattr(args, flag)}')
    try:   # one device string, checked once: 'auto', 'cpu', 'cuda', 'cuda:N' on a machine that has it
        args.device = str(resolve_device(args.device))
    except ValueError as e:
        build_parser().error(str(e))
    if args.nproc is not None and (not args.nproc or min(args.nproc) < 1):
        build_parser().error('--nproc: every number of processes must be at least 1')
    if args.full:
        unknown = [m for m in args.full if m not in MODELS]
        if unknown:
            build_parser().error(f'--full {unknown}: not in the registry {tuple(MODELS)}')
        return bench_full(args)
    if args.nproc:
        if any(spec[1:] != ('bpr', 1) for spec in args.models):
            build_parser().error('--nproc times train.py at its default loss; give the models by name only')
        return bench_nproc(args)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    if args.keep_zero_columns:
        Recommender.drop_zero_feature_columns = False
    device = torch.device(args.device)
    if not os.path.exists(os.path.join(args.data_path, 'test.npy')):
        from phr.data import synthetic as generate
        preset = os.path.basename(os.path.normpath(args.data_path))
        generate.run(generate.build_parser().parse_args(['--preset', preset, '--out', args.data_path]))
    data = load_dataset(args.data_path)
    test = data.test.to(device)
    sampler = TripleSampler(data, max(k for _, _, k in args.models))
    torch.manual_seed(0)
    # one batch for every row of the table: a model at K negatives reads the first K of them
    batches = sampler.__getitems__(torch.randperm(len(sampler))[:args.batch_size].tolist()).to(device)
    steps_per_epoch = math.ceil(len(sampler) / args.batch_size)

    rows = []
    floor = None
    for name, loss_name, num_neg in args.models:
        batch = batches[:, :3 + num_neg]
        loss_fn = LOSSES[loss_name]
        for aggr in args.aggr_modes:
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            torch.manual_seed(0)
            model = build_model(name, data, dim=args.dim_latent, aggr=aggr).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            if floor is None:
                x = model.graph_features
                w = torch.randn(x.size(1), args.dim_latent, device=device, requires_grad=True)
                floor = timed(lambda: (x @ w).sum().backward(), device, args.steps)

            def step():
                loss = loss_fn(model, batch, sampler)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            t_step = timed(step, device, args.steps)
            with torch.no_grad():
                t_proj = timed(lambda: model.project(model.graph_features), device, args.steps)
                x_video = model.project(model.graph_features)
                t_prop = timed(lambda: model.propagate(model.user_emb.weight, model.hashtag_emb.weight, x_video),
                               device, args.steps)
                enc = model.encode()
                t_score = timed(lambda: model.score(enc, batch[:, 0], Posts(ids=batch[:, 1]), batch[:, 2:]), device, args.steps)
            t_eval = timed(lambda: evaluate(model, test, batch_size=args.eval_batch), device, 1)
            rows.append((name, aggr, f'{loss_name} x{num_neg}', t_step, t_proj, t_prop, t_score,
                         t_step * steps_per_epoch, t_eval, len(test) / t_eval, peak_memory_gb(device)))
            del model, opt

    print(f'\ndevice: {describe(device)}; malloc keeps freed memory: {"yes" if kept else "no"}')
    print(f'data {args.data_path}: {data.num_video:,} videos '
          f'({len(data.graph.pair_count):,} user-hashtag pairs, {len(data.train):,} triples), batch {args.batch_size}, '
          f'dim {args.dim_latent}, {steps_per_epoch} steps per epoch, {len(test):,} test rows')
    width = model_width(data, args.keep_zero_columns)
    print(f'floor: projection matmul alone [{model_rows(data)} x {width}] @ '
          f'[{width} x {args.dim_latent}], fwd+bwd: {floor:.3f} s (feature columns {width} of '
          f'{data.features.size(1)}{"" if width == data.features.size(1) else "; all-zero columns left out"})\n')
    head = ('model', 'aggr', 'loss x negatives', 'step s', 'x floor', 'proj fwd', 'prop fwd', 'score fwd', 'epoch s',
            'eval s', 'rows/s', 'peak GB')
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for name, aggr, loss, ts, tp, tg, tc, te, tv, rps, mem in rows:
        print(f'| {name} | {aggr} | {loss} | {ts:.3f} | {ts / floor:.1f} | {tp:.3f} | {tg:.3f} | {tc:.4f} | {te:.0f} | '
              f'{tv:.2f} | {rps:,.0f} | {mem:.2f} |')


class DotProductFloor(torch.nn.Module):
    """score(u, h) = <e_u, e_h>, random: not a model, the cost floor of full-ranking validation (one matmul a block
    plus the metrics) that every dot-product scorer of the suite pays at least."""

    def __init__(self, num_user, num_hashtag, dim):
        super().__init__()
        self.user = torch.nn.Embedding(num_user, dim)
        self.hashtag = torch.nn.Embedding(num_hashtag, dim)

    def encode(self):
        return {}

    def score_all(self, enc, users, posts):
        return self.user(users) @ self.hashtag.weight.T


def bench_full(args):
    """Seconds of a full-ranking validation pass (train.py --protocol full: every hashtag a candidate, in blocks)
    against a training epoch (median step x steps per epoch; 0 for models without training), per model."""
    from evaluation import full_split
    from phr.training.losses import LOSSES as losses
    kept = keep_freed_memory() if args.keep_freed_memory else False
    device = torch.device(args.device)
    data = load_dataset(args.data_path)
    val = full_split(data, data.val).to(device)
    sampler = TripleSampler(data, 1)
    torch.manual_seed(0)
    batch = sampler.__getitems__(torch.randperm(len(sampler))[:args.batch_size].tolist()).to(device)
    steps_per_epoch = math.ceil(len(sampler) / args.batch_size)
    rows = []
    for name in args.full:
        torch.manual_seed(0)
        dims = {'dim': args.dim_latent} if 'dim' in [h.name for h in MODELS[name].hparams] else {}
        model = build_model(name, data, **dims).to(device)
        t_epoch = 0.0
        if model.trainable:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step():
                loss = losses['bpr'](model, batch, sampler)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            t_epoch = timed(step, device, args.steps) * steps_per_epoch
        t_val = timed(lambda: evaluate(model, val, batch_size=args.eval_batch), device, args.steps)
        rows.append((name, t_epoch, t_val, len(val) / t_val, peak_memory_gb(device)))
        del model
    # the least any model that scores by a dot product pays here: one [rows, d] x [d, H] matmul a block and the
    # metrics, through the same evaluate() (no propagation, no features)
    floor = DotProductFloor(data.num_user, data.num_hashtag, args.dim_latent).to(device)
    t_val = timed(lambda: evaluate(floor, val, batch_size=args.eval_batch), device, args.steps)
    rows.append((f'floor: one dot product <e_u, e_h> (d {args.dim_latent}), not a model', 0.0, t_val,
                 len(val) / t_val, peak_memory_gb(device)))
    print(f'\ndevice: {describe(device)}; malloc keeps freed memory: {"yes" if kept else "no"}')
    print(f'data {args.data_path}: {len(val):,} validation rows x {data.num_hashtag:,} hashtags (full ranking), '
          f'{steps_per_epoch} training steps of {args.batch_size} per epoch\n')
    print('| model | training epoch s | full-ranking validation s | rows/s | validation / epoch | peak GB |')
    print('|---|---|---|---|---|---|')
    for name, te, tv, rps, mem in rows:
        ratio = f'{tv / te:.2f}' if te else '—'
        print(f'| {name} | {te:.1f} | {tv:.1f} | {rps:,.0f} | {ratio} | {mem:.2f} |')
    return rows


def bench_nproc(args):
    """Seconds of one training epoch (train.py's own timing, training plus evaluation) per number of processes.
    On CPU each process gets cpu_count / nproc threads; on CUDA one device per process."""
    import json
    import subprocess
    import tempfile
    device = 'cuda' if args.device in ('auto', 'cuda') and torch.cuda.is_available() else 'cpu'
    print(f'device: {describe(torch.device(device))}; data {args.data_path}; batch {args.batch_size} (global)')
    print('| model | processes | epoch s (train + eval) | loss | val R@10 |')
    print('|---|---|---|---|---|')
    for name, _, _ in args.models:
        for n in args.nproc:
            with tempfile.TemporaryDirectory() as out:
                env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // n)))
                cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n),
                       'train.py', '--data_path', args.data_path, '--model_name', name, '--num_epoch', '1',
                       '--batch_size', str(args.batch_size), '--dim_latent', str(args.dim_latent), '--device', device,
                       '--save_dir', out, '--no_progress']
                subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
                m = json.loads(open(os.path.join(out, name, 'metrics.jsonl')).readline())
                print(f"| {name} | {n} | {m['seconds']:.1f} | {m['loss']:.4f} | {m['val']['recall@10']:.4f} |",
                      flush=True)


def model_width(data, keep_zero_columns):
    return data.features.size(1) if keep_zero_columns else int(data.features.ne(0).any(0).sum())


def model_rows(data):
    return len(torch.unique(data.graph.triple_video))
