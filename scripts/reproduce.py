"""The reproduction table: every model on the generated yfcc100m and instagram presets, over seeds -> RESULTS.md.

    python scripts/reproduce.py                         # 2-core CPU budget (yfcc100m x0.05, instagram x0.1, 3 seeds)
    python scripts/reproduce.py --scales yfcc100m=1 instagram=1 --device cuda --num_epoch 30   # full scale, GPU

The CPU scales keep at least 1,000 hashtags per dataset, so every val/test row still ranks 1,000 negatives.

Every model is trained by the same loop (train.py, BPR, same sampler), selected on validation Recall@10 and
reported on test at its best validation epoch. Writes RESULTS.md (table of P/R/NDCG@5 and @10, mean ± std
over seeds, with the commands, scale, seeds and machine) and results_val_recall.png (validation Recall@10 per
epoch per model, mean over seeds).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import generate  # noqa: E402
import train  # noqa: E402

MODELS = ['GCN_PHR', 'no_att', 'var1', 'Net', 'UTM', 'ConTagNet', 'CSMN', 'USHM', 'user_popularity', 'popularity']
LABELS = {'GCN_PHR': 'GCN-PHR (paper, Fig. 2)', 'no_att': 'GCN-PHR w/o attention', 'var1': 'homogeneous graph (var1)',
          'Net': "authors' released Net (fixed)", 'user_popularity': "floor: user's own frequency",
          'popularity': 'floor: global popularity'}
COLUMNS = [f'{m}@{k}' for k in (5, 10) for m in ('precision', 'recall', 'ndcg')]


def machine():
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f'{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}'


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--scales', nargs='+', default=['yfcc100m=0.05', 'instagram=0.1'],
                   help='preset=scale for each dataset to run (presets: yfcc100m, instagram, demo)')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    p.add_argument('--models', nargs='+', default=MODELS, choices=MODELS)
    p.add_argument('--num_epoch', type=int, default=10)
    p.add_argument('--batch_size', type=int, default=256)
    p.add_argument('--l_r', type=float, default=5e-3)
    p.add_argument('--device', default='auto')
    p.add_argument('--save_dir', default=os.path.join('runs', 'reproduce'))
    p.add_argument('--out', default='RESULTS.md')
    p.add_argument('--plot', default='results_val_recall.png')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.scale = {k: float(v) for k, v in (x.split('=') for x in args.scales)}
    except ValueError:
        raise SystemExit(f'error: --scales {args.scales}: expected preset=scale, e.g. yfcc100m=0.05')
    args.datasets = list(args.scale)
    t_start = time.perf_counter()
    results, curves, commands = {}, {}, []
    for ds in args.datasets:
        path = os.path.join('Data', ds + ('' if args.scale[ds] == 1.0 else f'_{args.scale[ds]:g}'))
        if not os.path.exists(os.path.join(path, 'test.npy')):
            generate.main(['--preset', ds, '--scale', str(args.scale[ds]), '--out', path])
        for model in args.models:
            for seed in args.seeds if model not in ('popularity', 'user_popularity') else args.seeds[:1]:
                run = f'{ds}/{model}_s{seed}'
                argv_run = ['--data_path', path, '--model_name', model, '--seed', str(seed),
                            '--num_epoch', str(args.num_epoch), '--batch_size', str(args.batch_size),
                            '--l_r', str(args.l_r), '--device', args.device, '--patience', str(args.num_epoch),
                            '--save_dir', args.save_dir, '--run_name', run, '--no_progress']
                commands.append('python train.py ' + ' '.join(argv_run))
                print(f'== {run}', flush=True)
                t0 = time.perf_counter()
                train.main(argv_run)
                lines = [json.loads(x) for x in open(os.path.join(args.save_dir, run, 'metrics.jsonl'))]
                best = max(lines, key=lambda x: x['val']['recall@10'])   # first epoch among ties
                results.setdefault((ds, model), []).append(
                    {'test': best['test'], 'val': best['val'], 'epoch': best['epoch'],
                     'seconds': time.perf_counter() - t0})
                curves.setdefault((ds, model), []).append([x['val']['recall@10'] for x in lines])
    write_results(args, results, curves, commands, time.perf_counter() - t_start)


def mean_std(values):
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{m:.4f} ± {s:.4f}'


def write_results(args, results, curves, commands, seconds):
    out = ['# Reproduction table', '',
           f'Generated by `python scripts/reproduce.py {" ".join(sys.argv[1:])}`'.rstrip() + ' on '
           + time.strftime('%Y-%m-%d') + f', in {seconds / 60:.1f} minutes.', '',
           f'- Machine: {machine()}',
           f'- Data: the generated presets at scale {", ".join(f"{d} x{s:g}" for d, s in args.scale.items())} (generate.py; '
           'not the authors\' data, which cannot be downloaded), 1,000 negatives per val/test row.',
           f'- Seeds: {", ".join(map(str, args.seeds))} (the popularity floors are deterministic: one run). '
           f'Each trained model: {args.num_epoch} epochs, batch {args.batch_size}, lr {args.l_r}, dim 64, '
           'BPR with one fresh negative per positive per epoch, same loop for every model.',
           '- Selection: the epoch of best **validation** Recall@10; the table shows **test** metrics at that epoch, '
           'mean ± std over seeds.', '']
    for ds in args.datasets:
        out += [f'## {ds} (scale {args.scale[ds]:g})', '',
                '| model | ' + ' | '.join(c.replace('precision', 'P').replace('recall', 'R').replace('ndcg', 'NDCG')
                                         for c in COLUMNS) + ' | val R@10 | best epoch | s/run |',
                '|---' * (len(COLUMNS) + 4) + '|']
        for model in args.models:
            rs = results.get((ds, model))
            if not rs:
                continue
            cells = [mean_std([r['test'][c] for r in rs]) for c in COLUMNS]
            out.append(f'| {LABELS.get(model, model)} | ' + ' | '.join(cells)
                       + f' | {mean_std([r["val"]["recall@10"] for r in rs])} | '
                       + ', '.join(str(r['epoch']) for r in rs) + f' | {statistics.fmean(r["seconds"] for r in rs):.0f} |')
        out.append('')
    out += [f'![validation Recall@10 per epoch]({args.plot})', '', '## Commands', '', '```']
    out += commands + ['```', '']
    with open(args.out, 'w') as f:
        f.write('\n'.join(out))
    print(f'wrote {args.out}')
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib not installed: no plot')
        return
    fig, axes = plt.subplots(1, len(args.datasets), figsize=(6 * len(args.datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], args.datasets):
        for model in args.models:
            cs = curves.get((ds, model))
            if not cs:
                continue
            n = min(len(c) for c in cs)
            mean = [statistics.fmean(c[i] for c in cs) for i in range(n)]
            style = '--' if 'popularity' in model else '-'
            ax.plot(range(n) if n > 1 else [0, args.num_epoch - 1], mean if n > 1 else mean * 2, style,
                    label=LABELS.get(model, model))
        ax.set_title(f'{ds} (scale {args.scale[ds]:g})')
        ax.set_xlabel('epoch')
        ax.set_ylabel('validation Recall@10')
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f'wrote {args.plot}')


if __name__ == '__main__':
    main()
