"""An equal tuning budget for every model, selection on validation only, 3 seeds, paired intervals -> RESULTS.md.

    python scripts/tune.py --jobs 2             # the committed plan (PLAN below), resumable; one run per core
    python scripts/tune.py --report             # only rebuild RESULTS.md from the committed results/tune.jsonl
    python scripts/tune.py --datasets demo=0.1 --models GCN_PHR USHM --configs 2 --max_epoch 1 \
        --results /tmp/t.jsonl --out /tmp/T.md   # a tiny end-to-end run

Protocol (as RecBole's ``run_hyper.py``: one command, any model, one declared search space):
  1. **search**: every trainable model draws the same number of configurations (``--configs``, 8) from its own
     grid (``SPACE``: learning rate and weight decay for all; ``num_layers`` / ``aggr_mode`` / ``scoring_mode`` for
     the graph models, and the extension's own switches; ``FIXED`` settings, such as GCN-PHR+'s
     ``--calibrate_counts``, join every configuration), by a seeded random draw without replacement. Each
     trains with seed 0 and early stopping (``--patience`` epochs without a better validation Recall@10, at most
     ``--max_epoch``); the selected epoch is the best on validation.
  2. **select**: the configuration of best validation Recall@10 (ties: NDCG@10). Test metrics are never read.
  3. **seeds**: that configuration with seeds 0, 1, 2. Seed 0 is the search run: its per-row test metrics are
     written from that run's best checkpoint when it is still in ``--save_dir`` (checked against the recorded
     test metrics), else the run is repeated, which gives the same numbers on the same machine (on another CPU
     close but not bit-identical ones: README, "full ranking").
  4. **intervals**: per test row, the difference between GCN-PHR and each other row in Recall@10 / NDCG@10,
     averaged over the 3 seeds (pairs of the same seed), then a paired bootstrap over test rows (1,000 draws):
     the 95% interval, and the verdict better / worse / not distinguishable.
The popularity floors have no knobs and no randomness: one run each.

Every finished run is appended to ``--results`` (a small JSON-lines file, committed) and skipped when the command
runs again, so a sweep continues where it stopped, on another day or machine; RESULTS.md is always rebuilt from
that file alone. Per-row test metrics of the seed runs go to ``results/rows/`` (a few KB each), for the intervals.
Each run is its own ``python train.py`` process with OMP_NUM_THREADS=1; ``--jobs N`` runs N at once, from one queue
over every dataset and phase (a model's seeds start when its own search is done; the next dataset starts when the
current one has no run left to start), so no core idles at a boundary.
"""
import argparse
import collections
import concurrent.futures as cf
import functools
import hashlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model as model_lib  # noqa: E402
from model import GraphModel  # noqa: E402

HOWYOUTAG_SRC = os.path.join(ROOT, '..', 'shared', 'data', 'howyoutag')
# the committed plan, measured on 2 CPU cores with --jobs 2 (README, Reproduction table): about 15 hours of wall time
# for the first five datasets, 2.2 hours of run time (summed over runs) for the last two
# the last two: the generated presets again at 2.5x the scale (2.5x the test posts: intervals about 0.6x as wide)
PLAN = dict(datasets=['yfcc100m=0.02', 'rtweet', 'howyoutag', 'instagram=0.04', 'howyoutag_makers',
                      'yfcc100m=0.05', 'instagram=0.1'],
            models=['GCN_PHR', 'no_att', 'var1', 'Net', 'UTM', 'ConTagNet', 'CSMN', 'USHM', 'GCN_PHR_plus',
                    'user_popularity', 'popularity'],
            configs=8, max_epoch=20, patience=3, batch_size=1024, seeds=[0, 1, 2])

# a dataset's own training settings, the same for every model on it (rtweet: 123 training posts, 6 val posts)
DATASET_SETTINGS = {'rtweet': dict(batch_size=64, max_epoch=60, patience=20)}

COMMON = {'l_r': [1e-3, 3e-3, 1e-2], 'weight_decay': [0.0, 1e-3, 0.1]}
GRAPH = {'num_layers': [1, 2], 'aggr_mode': ['mean', 'add'], 'scoring_mode': ['cat', 'fully_con']}
EXTRA = {'GCN_PHR_plus': {'loss': ['bpr', 'sampled_softmax'], 'num_train_neg': [1, 8],   # a model's own knobs
                         'count_weight': [1.0, 5.0]}}
# weight decay on the id embeddings and biases too (train.py --decay_embeddings; off in the authors' code): a knob of
# every model, drawn per configuration with this probability (``configurations``)
EMBEDDING_DECAY_P = 0.5
# a model's fixed settings, in every configuration of it (not drawn): GCN-PHR+ scales its learned count weight on
# validation, at every epoch, and selects the epoch on the calibrated validation (train.py --select_calibrated, which
# implies --calibrate_counts; README, "Where the count weight starts")
FIXED = {'GCN_PHR_plus': {'calibrate_counts': True, 'select_calibrated': True}}
EXTRA_FIXED = {}   # --fixed MODEL:FLAG=VALUE of this invocation, joined to FIXED (a variant tried under the protocol)
ABLATIONS = {'GCN_PHR_plus': ('identity', 'counts', 'content')}   # parts switched off one at a time, after its seeds


def space(name):
    """The grid of model ``name``: flag -> values."""
    spec = model_lib.MODELS[name]
    grid = dict(COMMON)
    if issubclass(spec.cls, GraphModel):
        grid.update(GRAPH)
    grid.update(EXTRA.get(name, {}))
    return grid


def configurations(name, n, seed=0):
    """``n`` configurations drawn from the model's grid (seeded): the grid's knobs without replacement (all of it if
    smaller), then for each drawn configuration whether its weight decay reaches the id embeddings and biases too
    (``decay_embeddings``, probability 1/2 from a second seeded draw; always off at weight decay 0, where it
    changes nothing). The second draw leaves the first unchanged, so runs drawn before the switch joined the grid
    are kept where the switch came out off. The model's ``FIXED`` settings join every configuration."""
    grid = space(name)
    keys = sorted(grid)
    every = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    rng = random.Random(f'{seed}:{name}')
    drawn = every if len(every) <= n else rng.sample(every, n)
    coin = random.Random(f'{seed}:{name}:decay_embeddings')
    fixed = dict(FIXED.get(name, {}), **EXTRA_FIXED.get(name, {}))
    return [dict(c, decay_embeddings=coin.random() < EMBEDDING_DECAY_P and c['weight_decay'] > 0, **fixed)
            for c in drawn]


def config_key(config):
    return json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=None)
def planned_keys(name, n):
    """The keys of model ``name``'s ``n`` planned configurations (a run of any other configuration is of an
    earlier grid)."""
    return frozenset(config_key(c) for c in configurations(name, n))


def search_records(results, dataset, model, n):
    """The finished search runs of the model's current grid on ``dataset`` (runs of an older grid left out)."""
    planned = planned_keys(model, n)
    return [r for r in results if r['dataset'] == dataset and r['model'] == model and r['phase'] == 'search'
            and r['status'] == 'ok' and config_key(r['config']) in planned]


# ---------------------------------------------------------------------------------------------------- datasets

def dataset_path(spec):
    """'yfcc100m=0.02' -> Data/yfcc100m_0.02 (generated); 'howyoutag[_makers]' -> Data/howyoutag[_makers];
    a folder that already holds a dataset -> itself."""
    if os.path.exists(os.path.join(spec, 'test.npy')):
        return spec
    name, _, scale = spec.partition('=')
    if name.startswith('howyoutag') or name == 'rtweet':
        return os.path.join(ROOT, 'Data', name)
    return os.path.join(ROOT, 'Data', name + ('' if scale in ('', '1') else f'_{float(scale):g}'))


def dataset_slug(spec):
    """The folder name of a dataset's runs and per-row files: 'yfcc100m=0.02' -> 'yfcc100m_0.02'; a dataset given as
    a folder path -> that path with its separators as '_' (so it stays under --save_dir and --rows_dir)."""
    return spec.replace('=', '_').strip(os.sep).replace(os.sep, '_')


def rows_folder(args, dataset):
    """Where a dataset's per-row test metrics and its ``history.npz`` go."""
    return os.path.join(args.rows_dir, dataset_slug(dataset))


def rows_path(args, job):
    """Per-row test metrics of a seed or ablation run: <model>_<configuration hash>_s<seed>.npz, so a rerun of
    the model at another configuration (a new grid, a new selection, a part switched off) never overwrites them."""
    digest = hashlib.sha1(config_key(job['config']).encode()).hexdigest()[:8]
    return os.path.join(rows_folder(args, job['dataset']), f"{job['model']}_{digest}_s{job['seed']}.npz")


def prepare(spec):
    path = dataset_path(spec)
    if os.path.exists(os.path.join(path, 'test.npy')):
        return path
    name, _, scale = spec.partition('=')
    if name == 'rtweet':
        cmd = [sys.executable, os.path.join('scripts', 'real_tweets.py'), '--import_only', '--out', path]
    elif name.startswith('howyoutag'):
        if not os.path.isdir(HOWYOUTAG_SRC):
            raise SystemExit(f'error: {HOWYOUTAG_SRC}: the #HowYouTagTweets files are not there')
        cmd = [sys.executable, 'import_posts.py', HOWYOUTAG_SRC, '--out', path]
        if name == 'howyoutag_makers':
            cmd += ['--split', 'makers']
    else:
        cmd = [sys.executable, 'generate.py', '--preset', name, '--out', path]
        if scale:
            cmd += ['--scale', scale]
    print('$ ' + ' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def history_shares(data):
    """Per test row, the share of the post's hashtags its user had used in training ([R] float): 1 where counting
    the user's own hashtags can find all of them, 0 where it can find none."""
    H = data.num_hashtag
    used = (data.graph.pair_user * H + data.graph.pair_hashtag).numpy()
    t = data.test
    seen = np.isin(t.users.numpy()[:, None] * H + t.candidates.numpy(), used) & t.pos_mask.numpy()
    return seen.sum(1) / t.pos_mask.numpy().sum(1)


def write_history(path, out):
    """``history.npz`` beside a dataset's per-row files (once): what the report's history table splits on, so that
    the table, like the rest of RESULTS.md, is rebuilt from ``results/`` alone."""
    if os.path.exists(out):
        return
    from data_load import load_dataset
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + '.tmp.npz'
    np.savez(tmp, seen=history_shares(load_dataset(path, verbose=False)))
    os.replace(tmp, out)


HISTORY = (('all used before', lambda s: s == 1), ('some', lambda s: (s > 0) & (s < 1)),
           ('none', lambda s: s == 0))


# ---------------------------------------------------------------------------------------------------- runs

def setting(args, dataset, key):
    return DATASET_SETTINGS.get(dataset, {}).get(key, getattr(args, key))


def run_name(job):
    """The run's folder under ``--save_dir``: <dataset>/<model>/<phase>_<index>_s<seed>[_no-<part>...]."""
    run = f"{dataset_slug(job['dataset'])}/{job['model']}/{job['phase']}_{job['index']}_s{job['seed']}"
    if job['phase'] == 'ablation':
        run += '_' + '_'.join(f'no-{k}' for k, v in sorted(job['config'].items()) if v is False)
    return run


def same_run(ckpt, job, config, epoch):
    """Whether checkpoint ``ckpt`` is of ``job``'s run: its seed, dataset, ``config`` flags and best ``epoch``."""
    flags = ckpt.get('config') or {}
    return (ckpt.get('epoch') == epoch and flags.get('seed') == job['seed']
            and os.path.abspath(flags.get('data_path', '')) == os.path.abspath(job['path'])
            and all(flags.get(k) == v for k, v in config.items()))


def rows_from_search(job, args, search, rows):
    """Seed 0 of the selected configuration *is* its search run (same flags, same seed, same numbers). When that
    run's best checkpoint is still in ``--save_dir``, its per-row test metrics are written from the checkpoint
    instead of training it again. The checkpoint must be that run's (flags, seed, data, epoch), and the rows must
    average to the test metrics the search run recorded; otherwise None, and the run trains as usual."""
    ckpt_path = os.path.join(args.save_dir, run_name(dict(job, phase='search', index=search['index'],
                                                          seed=search['seed'])), 'best.pt')
    if not os.path.exists(ckpt_path):
        return None
    import torch
    from data_load import load_dataset
    from train import write_test_rows
    t0 = time.perf_counter()
    try:
        torch.set_num_threads(args.threads)
        data = load_dataset(job['path'], verbose=False)
        model, ckpt = model_lib.load_checkpoint(ckpt_path, data, job['device'])
        if not same_run(ckpt, job, job['config'], search['best_epoch']):
            return None
        with torch.no_grad():
            write_test_rows(rows, model, data.test.to(job['device']))
        got = np.load(rows)
        if any(abs(float(got[k].mean()) - search['test'][k]) > 1e-5 for k in ('recall@10', 'ndcg@10')):
            os.remove(rows)
            return None
    except Exception as e:   # anything unexpected: train instead, as if there were no checkpoint
        print(f'{ckpt_path}: not reused ({type(e).__name__}: {e}); training instead', flush=True)
        return None
    return dict(job, status='ok', best_epoch=search['best_epoch'], epochs_run=search['epochs_run'], val=search['val'],
                test=search['test'], seconds=round(time.perf_counter() - t0, 1), curve=search['curve'],
                rows=os.path.relpath(rows, ROOT), from_run=os.path.relpath(os.path.dirname(ckpt_path), ROOT),
                **{k: search[k] for k in ('count_scale',) if search.get(k) is not None})


def calibrated_from_twin(job, args, results, rows):
    """A run with ``calibrate_counts`` whose twin without it (same model, flags, seed, run folder) finished before
    the switch joined the plan: training does not depend on the switch, so the twin's best checkpoint *is* this
    run's before calibration. It is calibrated in place (``train.calibrate_run``: the count weight scaled on
    validation, the checkpoint rewritten) instead of training again. The checkpoint must be the twin's (flags,
    seed, data, epoch) and its metrics must match the twin's record; otherwise None, and the run trains."""
    if not job['config'].get('calibrate_counts'):
        return None
    bare = {k: v for k, v in job['config'].items() if k != 'calibrate_counts'}
    twins = [r for r in results if r['status'] == 'ok' and r['dataset'] == job['dataset'] and r['model'] == job['model']
             and r['phase'] == job['phase'] and r['index'] == job['index'] and r['seed'] == job['seed']
             and config_key(r['config']) == config_key(bare)]
    run_dir = os.path.join(args.save_dir, run_name(job))
    ckpt_path = os.path.join(run_dir, 'best.pt')
    if not twins or not os.path.exists(ckpt_path):
        return None
    twin = twins[-1]
    import torch
    import train
    from data_load import load_dataset
    t0 = time.perf_counter()
    try:
        torch.set_num_threads(args.threads)
        data = load_dataset(job['path'], verbose=False)
        device = torch.device(job['device'])
        ckpt = model_lib.read_checkpoint(ckpt_path, 'cpu')
        flags = ckpt.get('config') or {}
        was = ckpt.get('best') or {}
        same = (same_run(ckpt, job, bare, twin['best_epoch'])
                # as the twin left it, or calibrated since (it keeps the trained weight: calibrate_run restarts there)
                and (was.get('count_weight_trained') is not None if flags.get('calibrate_counts') else
                     abs(was.get('test', {}).get('recall@10', -1) - twin['test']['recall@10']) < 1e-6))
        if not same:
            return None
        splits = {'val': data.val.to(device), 'test': data.test.to(device)}
        ks = train.parse_topk(train.build_parser().get_default('topk'))
        best = train.calibrate_run(ckpt_path, run_dir, data, splits, ks, None, device,
                                   config=dict(flags, calibrate_counts=True))
        if rows:
            model, _ = model_lib.load_checkpoint(ckpt_path, data, device)
            train.write_test_rows(rows, model, splits['test'])
    except (Exception, SystemExit) as e:   # anything unexpected: train instead
        print(f'{ckpt_path}: not calibrated in place ({type(e).__name__}: {e}); training instead', flush=True)
        return None
    return dict(job, status='ok', best_epoch=twin['best_epoch'], epochs_run=twin['epochs_run'], val=best['val'],
                test=best['test'], seconds=round(time.perf_counter() - t0, 1), curve=twin['curve'],
                rows=os.path.relpath(rows, ROOT) if rows else None,
                **{k: best[k] for k in ('count_scale',) if best.get(k) is not None},
                calibrated_from=f"the run of {config_key(bare)} ({twin['seconds']} s of training)")


def run_one(job, args, results=()):
    """One train.py process (or, for seed 0 of a selection, the search run's checkpoint); returns the record."""
    search = job.pop('search', None)
    run = run_name(job)
    rows = rows_path(args, job) if job['phase'] in ('seed', 'ablation') else None
    argv = [sys.executable, 'train.py', '--data_path', job['path'], '--model_name', job['model'],
            '--seed', str(job['seed']), '--num_epoch', str(setting(args, job['dataset'], 'max_epoch')),
            '--patience', str(setting(args, job['dataset'], 'patience')),
            '--batch_size', str(setting(args, job['dataset'], 'batch_size')), '--device', job['device'], '--save_dir', args.save_dir,
            '--run_name', run, '--no_progress', '--no-keep_freed_memory', '--overwrite']
    for k, v in job['config'].items():
        argv += [f'--{k}' if v else f'--no-{k}'] if isinstance(v, bool) else [f'--{k}', str(v)]
    if rows:
        argv += ['--test_rows', rows]
        if search is not None:
            rec = rows_from_search(job, args, search, rows)
            if rec is not None:
                return rec
    rec = calibrated_from_twin(job, args, results, rows)
    if rec is not None:
        return rec
    calibration = os.path.join(args.save_dir, run, 'calibration.json')
    if os.path.exists(calibration):   # an earlier run's, in this run folder
        os.remove(calibration)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ['(no output)']
        return dict(job, status='failed', error=tail[0], seconds=round(secs, 1))
    lines = [json.loads(x) for x in open(os.path.join(args.save_dir, run, 'metrics.jsonl'))]
    best = max(lines, key=lambda x: (x['val']['recall@10'], x['val']['ndcg@10'], -x['epoch']))
    extra = {}
    if os.path.exists(calibration):   # --calibrate_counts: the best epoch's metrics after scaling the count weight
        cal = json.load(open(calibration))
        best = dict(best, val=cal['val'], test=cal['test'])
        extra['count_scale'] = cal['count_scale']
    return dict(job, status='ok', best_epoch=best['epoch'], epochs_run=len(lines),
                val=best['val'], test=best['test'], seconds=round(secs, 1),
                curve=[round(x['val']['recall@10'], 4) for x in lines],
                rows=os.path.relpath(rows, ROOT) if rows else None,
                **extra)


def load_results(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:   # a line cut short by a killed sweep: that run is simply done again
                continue
            if model_lib.MODELS.get(rec.get('model')) and model_lib.MODELS[rec['model']].cls.trainable:
                # runs from before decay_embeddings was a knob of the grid ran with train.py's default: off
                rec['config'].setdefault('decay_embeddings', False)
            out.append(rec)
    return out


def done_key(rec):
    return (rec['dataset'], rec['model'], rec['phase'], config_key(rec['config']), rec['seed'])


def is_done(rec):
    """A finished run that is not run again: status ok and, for a seed or ablation run, its per-row test metrics
    on disk (ablation runs wrote none before the ablation table had intervals: they run again, with them)."""
    if rec.get('status') != 'ok':
        return False
    return rec['phase'] not in ('seed', 'ablation') or bool(rec.get('rows'))


def current(results):
    """One record per run (``done_key``): the last finished one, else the last one. A run done again (a failed
    run, an ablation run without per-row metrics) supersedes its earlier records in every table."""
    last = {}
    for rec in results:
        key = done_key(rec)
        if rec.get('status') == 'ok' or last.get(key, {}).get('status') != 'ok':
            last[key] = rec
    keep = {id(r) for r in last.values()}
    return [r for r in results if id(r) in keep]


def execute(args, results):
    """Run every planned run of ``--datasets`` not yet in the results file, ``--jobs`` at once, appending each record
    as it finishes. A run starts as soon as what it needs is there: a model's seed runs when *its* search is
    complete, the next dataset's runs when the current one has none left to start, so no core waits at a phase or
    dataset boundary. RESULTS.md is rebuilt each time a dataset has nothing left to run. A failed run is recorded
    and tried again only by the next invocation."""
    paths, reported, tried, running = {}, set(), set(), {}
    load = dict.fromkeys(args.devices, 0)

    def todo(dataset):
        done = {done_key(r) for r in results if is_done(r)}
        jobs = [j for phase in ('search', 'seed') for j in plan_jobs(args, dataset, paths[dataset], results, phase)]
        return [j for j in jobs if done_key(j) not in done and done_key(j) not in tried], len(jobs)

    def next_job():
        for dataset in args.datasets:
            first = dataset not in paths
            if first:
                paths[dataset] = prepare(dataset)
                write_history(paths[dataset], os.path.join(rows_folder(args, dataset), 'history.npz'))
            left, n = todo(dataset)
            if first and left:
                print(f'{dataset}: {len(left)} run(s) to do now ({n - len(left)} already in {args.results})',
                      flush=True)
            if left:
                return left[0]
        return None

    def report_finished():
        for dataset in list(paths):
            if dataset not in reported and not any(j['dataset'] == dataset for j in running.values()) \
                    and not todo(dataset)[0]:
                reported.add(dataset)
                report(args, results)

    with cf.ThreadPoolExecutor(args.jobs) as pool, open(args.results, 'a') as f:
        while True:
            while len(running) < args.jobs:
                job = next_job()
                if job is None:
                    break
                tried.add(done_key(job))
                # the least busy device; a device never changes a run's numbers, so it is not in the key
                job['device'] = min(args.devices, key=load.get)
                load[job['device']] += 1
                running[pool.submit(run_one, job, args, list(results))] = job
            if not running:
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                load[running.pop(fut)['device']] -= 1
                rec = dict(fut.result(), machine=machine())   # every record names the machine it ran on
                f.write(json.dumps(rec) + '\n')
                f.flush()
                results.append(rec)
                head = f"{rec['dataset']} {rec['model']} {rec['phase']} {rec['index']} s{rec['seed']}"
                if rec['status'] == 'ok':
                    scale = rec.get('count_scale')
                    print(f"{head}: val R@10 {rec['val']['recall@10']:.4f} at epoch {rec['best_epoch']} of "
                          f"{rec['epochs_run']}" + (f", count weight x{scale:g}" if scale is not None else '')
                          + f" ({rec['seconds']:.0f}s)", flush=True)
                else:
                    print(f"{head}: FAILED: {rec['error']}", flush=True)
            report_finished()


CONFIGS = None   # --configs of this invocation (set by main)


def selected(results, dataset, model):
    """The search record of best validation Recall@10 (ties: NDCG@10, then the first drawn), or None."""
    search = search_records(results, dataset, model, PLAN['configs'] if CONFIGS is None else CONFIGS)
    if not search:
        return None
    return max(search, key=lambda r: (r['val']['recall@10'], r['val']['ndcg@10'], -r['index']))


def plan_jobs(args, dataset, path, results, phase):
    jobs = []
    for model in args.models:
        trainable = model_lib.MODELS[model].cls.trainable
        if phase == 'search' and trainable:
            jobs += [dict(dataset=dataset, path=path, model=model, phase='search', index=i, seed=args.seeds[0],
                          config=c) for i, c in enumerate(configurations(model, args.configs))]
        if phase == 'seed':
            if not trainable:
                jobs.append(dict(dataset=dataset, path=path, model=model, phase='seed', index=0, seed=args.seeds[0],
                                 config={}))
                continue
            best = selected(results, dataset, model)
            n_search = len(search_records(results, dataset, model, args.configs))
            if best is None or n_search < len(planned_keys(model, args.configs)):
                continue   # the search is not complete: no selection yet
            jobs += [dict(dataset=dataset, path=path, model=model, phase='seed', index=best['index'], seed=s,
                          config=best['config'], **({'search': best} if s == best['seed'] else {}))
                     for s in args.seeds]
            if phase == 'seed' and args.ablations:
                jobs += [dict(dataset=dataset, path=path, model=model, phase='ablation', index=best['index'], seed=s,
                              config=dict(best['config'], **{part: False}))
                         for part in ABLATIONS.get(model, ()) for s in args.seeds]
    return jobs


# ---------------------------------------------------------------------------------------------------- statistics

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


# ---------------------------------------------------------------------------------------------------- report

def machine():
    import torch
    from bench import cpu_name   # scripts/bench.py, next to this file
    return f'{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}'


def machines(results):
    """The machines the records name (``machine`` of each run, recorded since 2026-12-01), most runs first."""
    seen = collections.Counter(r.get('machine', 'not recorded (earlier runs: 2-core CPU VMs of this project)')
                               for r in results)
    return '; '.join(f'{m} ({n} runs)' for m, n in seen.most_common())


def mean_std(values):
    if not values:
        return '—'
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.fmean(values):.4f} ± {s:.4f}'


def seed_records(results, dataset, model):
    """The seed runs of the model's current selection (seed runs of an earlier selection, or of an earlier grid
    while the current grid's search has none yet, are left out)."""
    best = selected(results, dataset, model)
    if best is None and model in model_lib.MODELS and model_lib.MODELS[model].cls.trainable:
        return []
    return [r for r in results if r['dataset'] == dataset and r['model'] == model and r['phase'] == 'seed'
            and r['status'] == 'ok' and (best is None or r['config'] == best['config'])]


def seed_rows(results, dataset, model, seeds, records=None):
    """[S, R] arrays of per-row test R@10 and NDCG@10 for the seed runs (or the given ``records``, one per seed,
    such as an ablation's), or None if one is missing."""
    recs = {r['seed']: r for r in (seed_records(results, dataset, model) if records is None else records)}
    det = not model_lib.MODELS[model].cls.trainable if model in model_lib.MODELS else False
    use = [recs.get(seeds[0])] * len(seeds) if det else [recs.get(s) for s in seeds]
    if any(r is None or not r.get('rows') or not os.path.exists(os.path.join(ROOT, r['rows'])) for r in use):
        return None
    arrays = [np.load(os.path.join(ROOT, r['rows'])) for r in use]
    return {m: np.stack([a[m] for a in arrays]) for m in ('recall@10', 'ndcg@10')}


def history_table(args, results, dataset):
    """Test Recall@10 of every model with seed rows, split by how many of the post's hashtags its user had used in
    training (``history.npz``): counting can only find those, so this shows where a model adds to counting."""
    fname = os.path.join(rows_folder(args, dataset), 'history.npz')
    if not os.path.exists(fname):
        return []
    seen = np.load(fname)['seen']
    masks = [(label, pick(seen)) for label, pick in HISTORY]
    out = ['', 'Test Recall@10 by the user\'s history with the post\'s hashtags (share of them the user used in '
           'training; mean over seeds of the same per-row metrics as above):', '',
           '| model | ' + ' | '.join(f'{label} ({int(m.sum())} rows)' for label, m in masks) + ' |',
           '|---' * (len(masks) + 1) + '|']
    n = 0
    for model in args.models:
        rows = seed_rows(results, dataset, model, args.seeds)
        if rows is None or rows['recall@10'].shape[1] != len(seen):
            continue
        r = rows['recall@10'].mean(0)
        out.append(f'| {model_lib.MODELS[model].label} | '
                   + ' | '.join(f'{r[m].mean():.3f}' if m.any() else '—' for _, m in masks) + ' |')
        n += 1
    return out if n else []


def report(args, results):
    t_total = sum(r.get('seconds', 0) for r in results)
    stale = sum(1 for r in results if r['model'] in model_lib.MODELS and model_lib.MODELS[r['model']].cls.trainable
                and config_key({k: v for k, v in r['config'].items() if k not in ABLATIONS.get(r['model'], ())})
                not in planned_keys(r['model'], args.configs))
    n_all, results = len(results), current(results)
    redone = f', {n_all - len(results)} of them superseded by a later run of the same run' if n_all > len(results) else ''
    out = ['# Reproduction table: equal tuning budget, selection on validation, 3 seeds, paired intervals', '',
           f'Rebuilt by `python scripts/tune.py --report` from `{os.path.relpath(args.results, ROOT)}` '
           f'({n_all} runs{redone}, {t_total / 3600:.1f} hours of run time in all, summed over parallel jobs). '
           f'The sweep: `python scripts/tune.py --jobs 2` (resumable; it skips every run already in that file).'
           + (f' {stale} runs of an earlier grid stay in that file for the record and are left out of the tables.'
              if stale else ''), '',
           f'- Machines of the runs: {machines(results)}; each run one process with OMP_NUM_THREADS={args.threads}.',
           f'- Budget: every trainable model gets {args.configs} configurations drawn from its own grid, each '
           f'trained with seed {args.seeds[0]}, early stopping (patience {args.patience} epochs on validation '
           f'Recall@10, at most {args.max_epoch} epochs), batch {args.batch_size}, dim 64, BPR with one fresh negative '
           'per positive per epoch. Grids: learning rate {1e-3, 3e-3, 1e-2} x weight decay {0, 1e-3, 0.1} for all, '
           'and whether that decay reaches the id embeddings and biases too (decay_embeddings, drawn on with '
           'probability 1/2 per configuration of nonzero decay); '
           'graph models also num_layers {1, 2} x aggr_mode {mean, add} x scoring_mode {cat, fully_con}; '
           'GCN_PHR_plus also loss {bpr, sampled_softmax} x num_train_neg {1, 8} x count_weight (initial) {1, 5}, '
           'and in every configuration its count weight scaled on validation at every epoch (select_calibrated), '
           'so its epochs are selected and stopped on the calibrated validation.',
           '- Selection: the configuration and epoch of best **validation** Recall@10; then seeds '
           f'{", ".join(map(str, args.seeds))} at that configuration. Table: **test** metrics at each run\'s best '
           'validation epoch, mean ± std over seeds.',
           '- Intervals: test Recall@10 / NDCG@10 of GCN-PHR minus the row, per test row averaged over the seeds '
           '(seed-paired), 95% paired bootstrap over test rows (1,000 draws). better / worse: the interval excludes 0 '
           '(GCN-PHR better / worse than that row).', '']
    for dataset in args.datasets:
        recs = [r for r in results if r['dataset'] == dataset]
        if not recs:
            out += [f'## {dataset}', '', 'not run yet.', '']
            continue
        own = DATASET_SETTINGS.get(dataset)
        out += [f'## {dataset}', ''] + ([f'Settings of this dataset, for every model: {own}.', ''] if own else [])
        out += ['| model | chosen configuration | best epochs (of run) | val R@10 | test R@10 | '
                'test NDCG@10 | test P@10 | GCN-PHR − row, R@10 [95% CI] | verdict | GCN-PHR − row, NDCG@10 [95% CI] | '
                'verdict | configs done |', '|---' * 12 + '|']
        ref = seed_rows(results, dataset, 'GCN_PHR', args.seeds)
        for model in args.models:
            label = model_lib.MODELS[model].label if model in model_lib.MODELS else model
            trainable = model_lib.MODELS[model].cls.trainable
            seeds = seed_records(recs, dataset, model)
            n_search = len(search_records(recs, dataset, model, args.configs)) if trainable else 0
            n_want = len(planned_keys(model, args.configs)) if trainable else 0
            if not seeds:
                what = f'search {n_search}/{n_want} done, no seed run yet' if trainable else 'not run yet'
                out.append(f'| {label} | {what} |' + ' |' * 10)
                continue
            conf = ', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                             for k, v in sorted(seeds[0]['config'].items())) or '—'
            epochs = ', '.join(f"{r['best_epoch']}{'!' if r['best_epoch'] == r['epochs_run'] - 1 and trainable else ''}"
                               f" ({r['epochs_run']})"
                               + (f" w x{r['count_scale']:g}" if r.get('count_scale') is not None else '')
                               for r in sorted(seeds, key=lambda r: r['seed']))
            cells = [mean_std([r['val']['recall@10'] for r in seeds])]
            cells += [mean_std([r['test'][m] for r in seeds]) for m in ('recall@10', 'ndcg@10', 'precision@10')]
            other = seed_rows(results, dataset, model, args.seeds)
            for m in ('recall@10', 'ndcg@10'):
                if model == 'GCN_PHR':
                    cells += ['(reference)', '']
                elif ref is None or other is None:
                    cells += ['seeds missing', '']
                else:
                    d, lo, hi = paired_bootstrap(ref[m], other[m])
                    cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
            done = f'{n_search}/{n_want}' if trainable else '—'
            out.append(f'| {label} | {conf} | {epochs} | ' + ' | '.join(cells) + f' | {done} |')
        plus = seed_rows(results, dataset, 'GCN_PHR_plus', args.seeds) if 'GCN_PHR_plus' in args.models else None
        if plus is not None:
            out += ['', 'The extension against every row (GCN-PHR+ minus the row, same paired bootstrap):', '',
                    '| row | R@10 [95% CI] | verdict | NDCG@10 [95% CI] | verdict |', '|---' * 5 + '|']
            for model in args.models:
                other = seed_rows(results, dataset, model, args.seeds)
                if model == 'GCN_PHR_plus' or other is None:
                    continue
                cells = []
                for m in ('recall@10', 'ndcg@10'):
                    d, lo, hi = paired_bootstrap(plus[m], other[m])
                    cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
                out.append(f'| {model_lib.MODELS[model].label} | ' + ' | '.join(cells) + ' |')
        for model, parts in ABLATIONS.items():
            chosen = selected(recs, dataset, model)
            if chosen is None:
                continue
            variants = {None: seed_records(recs, dataset, model)}
            variants.update({part: [r for r in recs if r['model'] == model and r['phase'] == 'ablation'
                                    and r['status'] == 'ok' and r['config'] == dict(chosen['config'], **{part: False})]
                             for part in parts})
            if not any(variants[part] for part in parts):
                continue   # no ablation run of the current selection yet
            out += ['', f'Ablation of {model} (its chosen configuration, each part switched off in turn; test, mean ± '
                    f'std over seeds; full model minus the variant by the same seed-paired bootstrap over test rows, '
                    f'where the variant\'s runs wrote per-row metrics):', '',
                    '| variant | seeds | test R@10 | test NDCG@10 | val R@10 | full − variant, R@10 [95% CI] | verdict '
                    '| full − variant, NDCG@10 [95% CI] | verdict |', '|---' * 9 + '|']
            full = seed_rows(recs, dataset, model, args.seeds)
            for part, rs in variants.items():
                if not rs:
                    continue
                cells = [f'{"full model" if part is None else "without " + part}', str(len(rs)),
                         mean_std([r["test"]["recall@10"] for r in rs]), mean_std([r["test"]["ndcg@10"] for r in rs]),
                         mean_std([r["val"]["recall@10"] for r in rs])]
                rows = None if part is None or full is None else seed_rows(recs, dataset, model, args.seeds, rs)
                if part is None:
                    cells += ['(reference)', '', '(reference)', '']
                elif rows is None:
                    cells += ['no per-row metrics', '', '', '']
                else:
                    for m in ('recall@10', 'ndcg@10'):
                        d, lo, hi = paired_bootstrap(full[m], rows[m])
                        cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
                out.append('| ' + ' | '.join(cells) + ' |')
        out += history_table(args, results, dataset)
        secs = sum(r.get('seconds', 0) for r in recs)
        out += ['', f'Run time on this dataset: {secs / 3600:.2f} hours (summed over runs). '
                '"!" marks a selected epoch that was the last one run (the cap was reached while still improving); '
                '"w xF": the factor of its learned count weight that GCN-PHR+ kept on validation (--calibrate_counts).', '']
    with open(args.out, 'w') as f:
        f.write('\n'.join(out))
    print(f'wrote {args.out}')


def parse_fixed(item):
    """'MODEL:FLAG=VALUE' (``--fixed``) -> (model, flag, value): true / false, an int, a float, else the string."""
    model, _, rest = item.partition(':')
    flag, eq, value = rest.partition('=')
    if not (model and flag and eq and value):
        raise SystemExit(f'error: --fixed {item!r}: expected MODEL:FLAG=VALUE, e.g. GCN_PHR_plus:count_gate=post')
    if model not in model_lib.MODELS:
        raise SystemExit(f'error: --fixed {item!r}: model {model!r} is not in the registry {tuple(model_lib.MODELS)}')
    from train import build_parser as train_parser
    if flag not in {a.dest for a in train_parser()._actions}:
        raise SystemExit(f'error: --fixed {item!r}: train.py has no flag --{flag}')
    if value.lower() in ('true', 'false'):
        return model, flag, value.lower() == 'true'
    for cast in (int, float):
        try:
            return model, flag, cast(value)
        except ValueError:
            pass
    return model, flag, value


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', nargs='+', default=PLAN['datasets'],
                   help='preset=scale (generated), howyoutag (authors\' split), howyoutag_makers (makers\' split)')
    p.add_argument('--models', nargs='+', default=PLAN['models'])
    p.add_argument('--configs', type=int, default=PLAN['configs'], help='configurations per trainable model')
    p.add_argument('--max_epoch', type=int, default=PLAN['max_epoch'])
    p.add_argument('--patience', type=int, default=PLAN['patience'])
    p.add_argument('--batch_size', type=int, default=PLAN['batch_size'])
    p.add_argument('--seeds', nargs='+', type=int, default=PLAN['seeds'])
    p.add_argument('--jobs', type=int, default=1, help='runs at once (one per core on CPU, one per device on GPUs)')
    p.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of each run')
    p.add_argument('--devices', nargs='+', default=['cpu'],
                   help='devices given to the runs round-robin, e.g. --jobs 4 --devices cuda:0 cuda:1 cuda:2 cuda:3')
    p.add_argument('--results', default=os.path.join(ROOT, 'results', 'tune.jsonl'))
    p.add_argument('--rows_dir', default=os.path.join(ROOT, 'results', 'rows'))
    p.add_argument('--save_dir', default=os.path.join(ROOT, 'runs', 'tune'))
    p.add_argument('--out', default=os.path.join(ROOT, 'RESULTS.md'))
    p.add_argument('--report', action='store_true', help='only rebuild --out from --results')
    p.add_argument('--fixed', nargs='+', default=[], metavar='MODEL:FLAG=VALUE',
                   help="one more fixed setting of a model, in every configuration of it (joins FIXED), to try a "
                        "variant under the same protocol, e.g. GCN_PHR_plus:count_gate=post (true/false for switches); "
                        "give it --results, --rows_dir, --save_dir and --out of its own")
    p.add_argument('--ablations', action=argparse.BooleanOptionalAction, default=True,
                   help='after its seeds, run each part of GCN_PHR_plus switched off (ABLATIONS), same seeds')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    global CONFIGS
    CONFIGS = args.configs
    unknown = [m for m in args.models if m not in model_lib.MODELS]
    if unknown:
        raise SystemExit(f'error: --models {unknown}: not in the registry {tuple(model_lib.MODELS)}')
    if args.configs < 1 or args.max_epoch < 1 or args.jobs < 1:
        raise SystemExit('error: --configs, --max_epoch and --jobs must be positive')
    EXTRA_FIXED.clear()
    for item in args.fixed:
        model, flag, value = parse_fixed(item)
        EXTRA_FIXED.setdefault(model, {})[flag] = value
    planned_keys.cache_clear()
    args.results, args.rows_dir, args.save_dir, args.out = map(os.path.abspath, (args.results, args.rows_dir,
                                                                                 args.save_dir, args.out))
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    results = load_results(args.results)
    if not args.report:
        execute(args, results)
    report(args, results)
    return results


if __name__ == '__main__':
    main()
