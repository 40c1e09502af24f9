"""RESULTS.md and the figures of docs/, from the results file and the per-row files alone (``--report``)."""
import collections
import os

import numpy as np

from data_load import DataError, load_npz

from phr.models.registry import MODELS, search_space
from phr.sweep import datasets
from phr.sweep.plan import ROOT, rows_folder
from phr.sweep.records import config_key, current, seed_records
from phr.sweep.stats import mean_std, paired_bootstrap, verdict

HISTORY = (('all used before', lambda s: s == 1), ('some', lambda s: (s > 0) & (s < 1)),
           ('none', lambda s: s == 0))



def seed_records_of(plan, results, dataset, model):
    return seed_records(results, dataset, model, plan.planned_keys(model) if plan.searched(model) else frozenset(),
                        plan.searched(model))


def fmt_value(v):
    """A grid value as the tables write it: 1e-3, 0.1, 5, true."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f'{v:.0e}'.replace('e-0', 'e-') if 0 < v < 0.1 else f'{v:g}'
    return str(v)


def grids_text(plan):
    """Each model's search space, as declared beside the model (``registry.search_space``); models of one space
    share a line."""
    groups = collections.OrderedDict()
    for model in plan.models:
        if plan.searched(model):
            space = search_space(model)
            key = config_key(space)
            groups.setdefault(key, (space, []))[1].append(model)
    parts = ['; '.join(f'{", ".join(models)}: ' + ' x '.join(f'{k} {{{", ".join(map(fmt_value, v))}}}'
                                                            for k, v in space.items())
                       for space, models in groups.values())]
    notes = ''.join(f' {m} {MODELS[m].cls.search_note}' for m in plan.models
                    if plan.searched(m) and MODELS[m].cls.search_note)
    return ('Grids (declared beside each model; a configuration that decays the embeddings without weight decay is '
            'not drawn): ' + parts[0] + '.' + notes)


def record_cells(model, rec):
    """What a model's hook added to a run's record, as its ``record_fields`` write it (GCN-PHR+: ' w x5')."""
    fields = MODELS[model].cls.record_fields if model in MODELS else {}
    return ''.join(' ' + fmt.format(rec[k]) for k, (fmt, _) in fields.items() if rec.get(k) is not None)


def record_notes(plan):
    """The notes that explain those cells, of the plan's models."""
    notes = []
    for m in plan.models:
        for _, note in (MODELS[m].cls.record_fields if m in MODELS else {}).values():
            if note not in notes:
                notes.append(note)
    return notes


def machines(results):
    """The machines the records name (``machine`` of each run, recorded since 2026-12-01), most runs first."""
    seen = collections.Counter(r.get('machine', 'not recorded (earlier runs: 2-core CPU VMs of this project)')
                               for r in results)
    return '; '.join(f'{m} ({n} runs)' for m, n in seen.most_common())


def seed_rows(plan, results, dataset, model, seeds, records=None):
    """[S, R] arrays of per-row test R@10 and NDCG@10 for the seed runs (or the given ``records``, one per seed,
    such as an ablation's), or None if one is missing."""
    recs = {r['seed']: r for r in (seed_records_of(plan, results, dataset, model) if records is None else records)}
    det = model in MODELS and not MODELS[model].trainable
    use = [recs.get(seeds[0])] * len(seeds) if det else [recs.get(s) for s in seeds]
    if any(r is None or not r.get('rows') or not os.path.exists(os.path.join(ROOT, r['rows'])) for r in use):
        return None
    try:
        arrays = [load_npz(os.path.join(ROOT, r['rows']), 'per-row file') for r in use]
    except DataError as e:
        raise SystemExit(f'error: {e}')
    for r, a in zip(use, arrays):   # a record and its per-row file must say the same: else one was edited or swapped
        for m in ('recall@10', 'ndcg@10'):
            if m in a and abs(float(a[m].mean()) - r['test'][m]) > 1e-4:
                raise SystemExit(f"error: {r['rows']}: its mean test {m} {float(a[m].mean()):.4f} disagrees with its "
                                 f"record ({r['dataset']} {r['model']} {r['phase']} seed {r['seed']}: "
                                 f"{r['test'][m]:.4f}); one of them was edited: run that run again (delete its record)")
    return {m: np.stack([a[m] for a in arrays]) for m in ('recall@10', 'ndcg@10')}


def history_table(ctx, plan, results, dataset):
    """Test Recall@10 of every model with seed rows, split by how many of the post's hashtags its user had used in
    training (``history.npz``): counting can only find those, so this shows where a model adds to counting."""
    fname = os.path.join(rows_folder(ctx.rows_dir, dataset), 'history.npz')
    if not os.path.exists(fname):
        return []
    seen = np.load(fname)['seen']
    masks = [(label, pick(seen)) for label, pick in HISTORY]
    out = ['', 'Test Recall@10 by the user\'s history with the post\'s hashtags (share of them the user used in '
           'training; mean over seeds of the same per-row metrics as above):', '',
           '| model | ' + ' | '.join(f'{label} ({int(m.sum())} rows)' for label, m in masks) + ' |',
           '|---' * (len(masks) + 1) + '|']
    n = 0
    for model in plan.models:
        rows = seed_rows(plan, results, dataset, model, plan.seeds)
        if rows is None or rows['recall@10'].shape[1] != len(seen):
            continue
        r = rows['recall@10'].mean(0)
        out.append(f'| {MODELS[model].label} | '
                   + ' | '.join(f'{r[m].mean():.3f}' if m.any() else '—' for _, m in masks) + ' |')
        n += 1
    return out if n else []


def report(ctx, plan, results):
    t_total = sum(r.get('seconds', 0) for r in results)
    stale = sum(1 for r in results if plan.searched(r['model'])
                and config_key({k: v for k, v in r['config'].items() if k not in MODELS[r['model']].cls.ablations})
                not in plan.planned_keys(r['model']))
    results = [r for r in results if r['protocol'] == plan.protocol]
    n_all, results = len(results), current(results)
    redone = f', {n_all - len(results)} of them superseded by a later run of the same run' if n_all > len(results) else ''
    title = {'sampled': '# Reproduction table: equal tuning budget, selection on validation, 3 seeds, paired intervals',
             'full': '# Full ranking: every hashtag a candidate; equal tuning budget, selection on full-ranking '
                     'validation, 3 seeds, paired intervals'}[plan.protocol]
    out = [title, '',
           f'Rebuilt by `python scripts/tune.py --report` from `{os.path.relpath(ctx.results, ROOT)}` '
           f'({n_all} runs{redone}, {t_total / 3600:.1f} hours of run time in all, summed over parallel jobs). '
           f'The sweep: `python scripts/tune.py{"" if plan.protocol == "sampled" else " --protocol " + plan.protocol} '
           f'--jobs 2` (resumable; it skips every run already in that file).'
           + (f' {stale} runs of an earlier grid stay in that file for the record and are left out of the tables.'
              if stale else ''), '',
           f'- Machines of the runs: {machines(results)}; each run one process with OMP_NUM_THREADS={ctx.threads}.',
           f'- Budget: every trainable model gets {plan.configs} configurations drawn from its own grid, each '
           f'trained with seed {plan.seeds[0]}, early stopping (patience {plan.patience} epochs on validation '
           f'Recall@10, at most {plan.max_epoch} epochs), batch {plan.batch_size}, dim 64, BPR with one fresh negative '
           'per positive per epoch unless the grid says otherwise. ' + grids_text(plan),
           '- Selection: the configuration and epoch of best **validation** Recall@10; then seeds '
           f'{", ".join(map(str, plan.seeds))} at that configuration. Table: **test** metrics at each run\'s best '
           'validation epoch, mean ± std over seeds.',
           '- Intervals: test Recall@10 / NDCG@10 of GCN-PHR minus the row, per test row averaged over the seeds '
           '(seed-paired), 95% paired bootstrap over test rows (1,000 draws). better / worse: the interval excludes 0 '
           '(GCN-PHR better / worse than that row).', '']
    for dataset in plan.datasets:
        recs = [r for r in results if r['dataset'] == dataset]
        if not recs:
            out += [f'## {dataset}', '', 'not run yet.', '']
            continue
        own = datasets.settings(dataset)
        out += [f'## {dataset}', ''] + ([f'Settings of this dataset, for every model: {own}.', ''] if own else [])
        out += ['| model | chosen configuration | best epochs (of run) | val R@10 | test R@10 | '
                'test NDCG@10 | test P@10 | GCN-PHR − row, R@10 [95% CI] | verdict | GCN-PHR − row, NDCG@10 [95% CI] | '
                'verdict | configs done |', '|---' * 12 + '|']
        ref = seed_rows(plan, results, dataset, plan.reference, plan.seeds)
        for model in plan.models:
            label = MODELS[model].label if model in MODELS else model
            trainable, searched = plan.trainable(model), plan.searched(model)
            seeds = seed_records_of(plan, recs, dataset, model)
            n_search = len(plan.search_records(recs, dataset, model)) if searched else 0
            n_want = len(plan.planned_keys(model)) if searched else 0
            if not seeds:
                what = f'search {n_search}/{n_want} done, no seed run yet' if searched else 'not run yet'
                out.append(f'| {label} | {what} |' + ' |' * 10)
                continue
            conf = ', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                             for k, v in sorted(seeds[0]['config'].items())) or '—'
            epochs = ', '.join(f"{r['best_epoch']}{'!' if r['best_epoch'] == r['epochs_run'] - 1 and trainable else ''}"
                               f" ({r['epochs_run']})"
                               + record_cells(model, r)
                               for r in sorted(seeds, key=lambda r: r['seed']))
            cells = [mean_std([r['val']['recall@10'] for r in seeds])]
            cells += [mean_std([r['test'][m] for r in seeds]) for m in ('recall@10', 'ndcg@10', 'precision@10')]
            other = seed_rows(plan, results, dataset, model, plan.seeds)
            for m in ('recall@10', 'ndcg@10'):
                if model == plan.reference:
                    cells += ['(reference)', '']
                elif ref is None or other is None:
                    cells += ['seeds missing', '']
                else:
                    d, lo, hi = paired_bootstrap(ref[m], other[m])
                    cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
            done = f'{n_search}/{n_want}' if searched else '—'
            out.append(f'| {label} | {conf} | {epochs} | ' + ' | '.join(cells) + f' | {done} |')
        for ext in plan.extensions:
            plus = seed_rows(plan, results, dataset, ext, plan.seeds) if ext in plan.models else None
            if plus is None:
                continue
            out += ['', f'The extension against every row ({MODELS[ext].short} minus the row, same paired '
                    f'bootstrap):', '',
                    '| row | R@10 [95% CI] | verdict | NDCG@10 [95% CI] | verdict |', '|---' * 5 + '|']
            for model in plan.models:
                other = seed_rows(plan, results, dataset, model, plan.seeds)
                if model == ext or other is None:
                    continue
                cells = []
                for m in ('recall@10', 'ndcg@10'):
                    d, lo, hi = paired_bootstrap(plus[m], other[m])
                    cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
                out.append(f'| {MODELS[model].label} | ' + ' | '.join(cells) + ' |')
        for model in [m for m in plan.models if plan.searched(m) and MODELS[m].cls.ablations]:
            parts = MODELS[model].cls.ablations
            chosen = plan.selected(recs, dataset, model)
            if chosen is None:
                continue
            variants = {None: seed_records_of(plan, recs, dataset, model)}
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
            full = seed_rows(plan, recs, dataset, model, plan.seeds)
            for part, rs in variants.items():
                if not rs:
                    continue
                cells = [f'{"full model" if part is None else "without " + part}', str(len(rs)),
                         mean_std([r["test"]["recall@10"] for r in rs]), mean_std([r["test"]["ndcg@10"] for r in rs]),
                         mean_std([r["val"]["recall@10"] for r in rs])]
                rows = None if part is None or full is None else seed_rows(plan, recs, dataset, model, plan.seeds, rs)
                if part is None:
                    cells += ['(reference)', '', '(reference)', '']
                elif rows is None:
                    cells += ['no per-row metrics', '', '', '']
                else:
                    for m in ('recall@10', 'ndcg@10'):
                        d, lo, hi = paired_bootstrap(full[m], rows[m])
                        cells += [f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]', verdict(lo, hi)]
                out.append('| ' + ' | '.join(cells) + ' |')
        out += history_table(ctx, plan, results, dataset)
        secs = sum(r.get('seconds', 0) for r in recs)
        out += ['', f'Run time on this dataset: {secs / 3600:.2f} hours (summed over runs). '
                '"!" marks a selected epoch that was the last one run (the cap was reached while still improving); '
                + ' '.join(record_notes(plan)), '']
    return '\n'.join(out)
