"""Running a sweep's jobs: each is its own ``python train.py`` process with OMP_NUM_THREADS=1, ``jobs`` at once
from one queue over every dataset and phase (model by model in the plan's order: a model's seeds start as soon as
its own search is done, before the next model's search; the next dataset starts when the current one has no run
left to start), so no core idles at a boundary. Every finished run is
appended to the results file at once, so a sweep stopped at any point continues where it stopped."""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

import numpy as np

from phr.util import atomic
from phr.training import run_folder
from data_load import DataError, fingerprints as data_fingerprints
from evaluation import best_by_validation
from phr.sweep import records
from phr.models.registry import MODELS
from phr.util.runtime import cpu_name
from phr.sweep.plan import ROOT, prepare, rows_folder, rows_path, run_name


def machine():
    import torch
    return f'{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}'


def record_fields(model):
    """The fields a model's hook adds to its runs' records (``Recommender.record_fields``), by registry name."""
    return tuple(MODELS[model].cls.record_fields) if model in MODELS else ()


def history_shares(data):
    """Per test row, the share of the post's hashtags its user had used in training ([R] float): 1 where counting
    the user's own hashtags can find all of them, 0 where it can find none."""
    H = data.num_hashtag
    used = (data.graph.pair_user * H + data.graph.pair_hashtag).numpy()
    t = data.test
    seen = np.isin(t.users.numpy()[:, None] * H + t.candidates.numpy(), used) & t.pos_mask.numpy()
    return seen.sum(1) / t.pos_mask.numpy().sum(1)


def write_history(path, out, known):
    """``history.npz`` beside a dataset's per-row files: what the report's history table splits on, so that the
    table, like the rest of RESULTS.md, is rebuilt from ``results/`` alone. Written once per dataset, with the
    dataset's fingerprint (``known``: its ``fingerprints``): a regenerated or re-imported dataset gets it written again
    (a file of before the fingerprint was kept in it stays while its row count is the test split's)."""
    from data_load import load_dataset, matches
    kept = None
    if os.path.exists(out):
        with np.load(out, allow_pickle=False) as old:
            kept = str(old['fingerprint']) if 'fingerprint' in old.files else len(old['seen'])
        if isinstance(kept, str) and matches(kept, path, known):
            return
    data = load_dataset(path, verbose=False)
    if kept is not None:
        if kept == len(data.test):
            return
        print(f'{out}: of another version of {path}; written again')
    atomic.atomic_write(out, lambda tmp: np.savez(tmp, seen=history_shares(data), fingerprint=np.array(
        data.fingerprint)), suffix='.npz')


def same_run(ckpt, job, config, epoch):
    """Whether checkpoint ``ckpt`` is of ``job``'s run: its seed, dataset, ``config`` flags and best ``epoch``."""
    flags = ckpt.get('config') or {}
    return (ckpt.get('epoch') == epoch and flags.get('seed') == job['seed']
            and os.path.abspath(flags.get('data_path', '')) == os.path.abspath(job['path'])
            and all(flags.get(k) == v for k, v in config.items()))


def rows_from_search(job, ctx, search, rows):
    """Seed 0 of the selected configuration *is* its search run (same flags, same seed, same numbers). When that
    run's best checkpoint is still in ``save_dir``, its per-row test metrics are written from the checkpoint
    instead of training it again. The checkpoint must be that run's (flags, seed, data, epoch), and the rows must
    average to the test metrics the search run recorded; otherwise None, and the run trains as usual."""
    ckpt_path = os.path.join(ctx.save_dir, run_name(dict(job, phase='search', index=search['index'],
                                                         seed=search['seed'])), run_folder.BEST)
    if not os.path.exists(ckpt_path):
        return None
    import torch
    from phr.training.checkpoint import load_checkpoint
    from data_load import load_dataset
    t0 = time.perf_counter()
    try:
        torch.set_num_threads(ctx.threads)
        data = load_dataset(job['path'], verbose=False)
        model, ckpt = load_checkpoint(ckpt_path, data, job['device'])
        if not same_run(ckpt, job, job['config'], search['best_epoch']):
            return None
        with torch.no_grad():
            run_folder.write_test_rows(rows, model, data.test.to(job['device']))
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
                **{k: search[k] for k in record_fields(job['model']) if search.get(k) is not None})


def train_argv(job, ctx, plan, run):
    """The train.py command line of a job: the protocol's settings (training ones only for a trained model), then
    the job's configuration."""
    argv = [sys.executable, 'train.py', '--data_path', job['path'], '--model_name', job['model'],
            '--seed', str(job['seed']), '--device', job['device'], '--save_dir', ctx.save_dir,
            '--run_name', run, '--no_progress', '--overwrite']   # train.py's defaults otherwise (docs/speed.md)
    if plan.protocol != 'sampled':
        argv += ['--protocol', plan.protocol]
    if plan.trainable(job['model']):
        argv += ['--num_epoch', str(plan.setting(job['dataset'], 'max_epoch')),
                 '--patience', str(plan.setting(job['dataset'], 'patience')),
                 '--batch_size', str(plan.setting(job['dataset'], 'batch_size'))]
    for k, v in job['config'].items():
        argv += [f'--{k}' if v else f'--no-{k}'] if isinstance(v, bool) else [f'--{k}', str(v)]
    return argv


def run_one(job, ctx, plan):
    """One train.py process (or, for seed 0 of a selection, the search run's checkpoint); returns the record."""
    search = job.pop('search', None)
    job.pop('data_fingerprint_legacy', None)   # what a record may match, not what it is
    run = run_name(job)
    rows = rows_path(ctx.rows_dir, job) if job['phase'] in ('seed', 'ablation') else None
    argv = train_argv(job, ctx, plan, run)
    if rows:
        argv += ['--test_rows', rows]
        if search is not None:
            rec = rows_from_search(job, ctx, search, rows)
            if rec is not None:
                return rec
    finish = os.path.join(ctx.save_dir, run, run_folder.FINISH)
    if os.path.exists(finish):   # an earlier run's, in this run folder
        os.remove(finish)
    env = dict(os.environ, OMP_NUM_THREADS=str(ctx.threads), MKL_NUM_THREADS=str(ctx.threads))
    t0 = time.perf_counter()
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ['(no output)']
        return dict(job, status='failed', error=tail[0], seconds=round(secs, 1))
    lines = run_folder.read_metrics(os.path.join(ctx.save_dir, run))
    best = best_by_validation(lines)
    extra = {}
    if os.path.exists(finish):   # the model's hook changed the best checkpoint: its metrics, and the fields it keeps
        with open(finish) as f:
            done = json.load(f)
        best = dict(best, val=done['val'], test=done['test'])
        extra = {k: done['fields'][k] for k in record_fields(job['model']) if k in done.get('fields', {})}
    return dict(job, status='ok', best_epoch=best['epoch'], epochs_run=len(lines),
                val=best['val'], test=best['test'], seconds=round(secs, 1),
                curve=[round(x['val']['recall@10'], 4) for x in lines],
                rows=os.path.relpath(rows, ROOT) if rows else None,
                **extra)


def execute(ctx, plan, results, on_dataset_done=None):
    """Run every planned run of ``plan.datasets`` not yet in ``results``, ``ctx.jobs`` at once, appending each
    record to ``ctx.results`` as it finishes. ``on_dataset_done()`` is called each time a dataset has nothing left
    to run (the command rebuilds the report then). A failed run is recorded and tried again only by the next
    invocation. Returns the runs that failed (their heads), so the command can exit non-zero."""
    paths, fingerprints, reported, tried, running, failed = {}, {}, set(), set(), {}, []
    load = dict.fromkeys(ctx.devices, 0)
    here = machine()

    def todo(dataset):
        done = {}
        for r in results:
            if records.is_done(r):
                done.setdefault(records.done_key(r), []).append(r)
        jobs = [j for phase in ('search', 'seed') for j in plan.jobs(dataset, paths[dataset], results, phase)]
        for j in jobs:   # what else defines the run (kept in its record): the budget and the dataset's files
            j.update(identity(dataset, j['model']))
        # model by model, in the plan's order: a model's seeds (once its search is complete) go before the next
        # model's search, so the first models of the plan reach the table first
        order = {m: i for i, m in enumerate(plan.models)}
        jobs.sort(key=lambda j: order[j['model']])
        return [j for j in jobs if not any(records.same_run(r, j) for r in done.get(records.done_key(j), []))
                and records.done_key(j) not in tried], len(jobs)

    def identity(dataset, model):
        budget = {k: plan.setting(dataset, k) for k in ('max_epoch', 'patience', 'batch_size')} \
            if plan.trainable(model) else None
        return {'budget': budget, 'data_fingerprint': fingerprints[dataset][0],
                'data_fingerprint_legacy': fingerprints[dataset][1]}

    def next_job():
        for dataset in plan.datasets:
            first = dataset not in paths
            if first:
                paths[dataset] = prepare(dataset)
                fingerprints[dataset] = data_fingerprints(paths[dataset])
                try:
                    write_history(paths[dataset], os.path.join(rows_folder(ctx.rows_dir, dataset), 'history.npz'),
                                  fingerprints[dataset])
                except DataError as e:   # e.g. the authors' pickled layout: convert it once, then sweep
                    raise SystemExit(f'error: dataset {dataset}: {e}') from None
            left, n = todo(dataset)
            if first and left:
                print(f'{dataset}: {len(left)} run(s) to do now ({n - len(left)} already in {ctx.results})',
                      flush=True)
            if left:
                return left[0]
        return None

    with cf.ThreadPoolExecutor(ctx.jobs) as pool:
        while True:
            while len(running) < ctx.jobs:
                job = next_job()
                if job is None:
                    break
                tried.add(records.done_key(job))
                # the least busy device; a device never changes a run's numbers, so it is not in the key
                job['device'] = min(ctx.devices, key=load.get)
                load[job['device']] += 1
                running[pool.submit(run_one, job, ctx, plan)] = job
            if not running:
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                load[running.pop(fut)['device']] -= 1
                rec = dict(fut.result(), machine=here)   # every record names the machine it ran on
                records.append(ctx.results, rec)
                results.append(rec)
                head = f"{rec['protocol']} {rec['dataset']} {rec['model']} {rec['phase']} {rec['index']} s{rec['seed']}"
                if rec['status'] == 'ok':
                    kept = ''.join(f', {k} {rec[k]:g}' for k in record_fields(rec['model']) if rec.get(k) is not None)
                    print(f"{head}: val R@10 {rec['val']['recall@10']:.4f} at epoch {rec['best_epoch']} of "
                          f"{rec['epochs_run']}{kept} ({rec['seconds']:.0f}s)", flush=True)
                else:
                    failed.append(head)
                    print(f"{head}: FAILED: {rec['error']}", flush=True)
            for dataset in list(paths):
                if dataset not in reported and not any(j['dataset'] == dataset for j in running.values()) \
                        and not todo(dataset)[0]:
                    reported.add(dataset)
                    if on_dataset_done:
                        on_dataset_done()
    return failed
