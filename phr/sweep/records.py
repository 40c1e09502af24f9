"""The results file of a sweep: one JSON line per finished run (committed, small), read and appended here only.

A record: protocol (sampled | full), dataset, path, model, phase (search | seed | ablation), index (of the configuration drawn), seed,
config (train.py flags), status (ok | failed), best_epoch, epochs_run, val, test (metrics at the best validation
epoch), seconds, curve (validation R@10 per epoch), rows (the per-row test file of a seed or ablation run), machine;
and the fields a model's hook adds (its ``record_fields``: ``count_scale`` for GCN-PHR+'s calibrated runs). ``FORMAT`` is the format written now; ``migrate`` brings a record
of an earlier format to it (scripts/migrate_results.py rewrote the committed file once).
"""
import json
import os

from phr.util import atomic
from phr.models.registry import MODELS
from evaluation import best_by_validation

FORMAT = 2


def config_key(config):
    return json.dumps(config, sort_keys=True)


def migrate(rec, trainable):
    """A record of format 1 in format 2: every trainable model's config names ``decay_embeddings`` (runs from before
    it was a knob of the grid ran with train.py's default, off), and every record its ``protocol`` (format 1 had
    one: sampled). ``trainable``: whether the record's model trains."""
    rec = dict(rec, config=dict(rec.get('config') or {}))
    if trainable:
        rec['config'].setdefault('decay_embeddings', False)
    rec.setdefault('protocol', 'sampled')
    return rec


def load(path, say=print):
    """The records of ``path`` ([] when it does not exist). A line that is not a whole record (cut by a kill, or
    edited by hand) is reported with its line number and skipped: that run is simply done again."""
    if not os.path.exists(path):
        return []
    if os.path.isdir(path):
        raise SystemExit(f'error: --results {path}: is a folder, expected a JSON-lines file')
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            whole = isinstance(rec, dict) and {'protocol', 'dataset', 'model', 'phase', 'seed', 'config',
                                               'status'} <= set(rec)
            if not whole or not isinstance(rec['config'], dict) or not isinstance(rec.get('index', 0), int) \
                    or isinstance(rec.get('index', 0), bool):
                say(f'{path}:{i}: not a whole run record (or its config is not a mapping, or its index not a '
                    f'number), skipped (that run is done again)')
                continue
            out.append(rec)
    return out


def append(path, rec):
    atomic.append_line(path, rec)


def done_key(rec):
    return (rec['protocol'], rec['dataset'], rec['model'], rec['phase'], config_key(rec['config']), rec['seed'])


def same_run(rec, job):
    """Whether ``rec`` (a record of ``job``'s ``done_key``) is a run of ``job`` as planned now: the same training
    budget and the same dataset files (``data_load.fingerprint``) where the record says them. Records written
    before they were recorded do not say them and are taken as they are."""
    if rec.get('budget') is not None and rec['budget'] != job.get('budget'):
        return False
    return rec.get('data_fingerprint') in (None, job.get('data_fingerprint'), job.get('data_fingerprint_legacy'))


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


def search_records(results, dataset, model, planned):
    """The finished search runs of the model's current plan on ``dataset`` (``planned``: its configuration keys;
    runs of an older grid are left out)."""
    return [r for r in results if r['dataset'] == dataset and r['model'] == model and r['phase'] == 'search'
            and r['status'] == 'ok' and config_key(r['config']) in planned]


def selected(results, dataset, model, planned):
    """The search record of best validation Recall@10 (ties: NDCG@10, then the first drawn), or None."""
    return best_by_validation(sorted(search_records(results, dataset, model, planned), key=lambda r: r['index']))


def seed_records(results, dataset, model, planned, searched):
    """The seed runs of the model's current selection (seed runs of an earlier selection, or of an earlier grid
    while the current grid's search has none yet, are left out). ``searched``: whether the model has a search."""
    best = selected(results, dataset, model, planned) if searched else None
    if best is None and searched:
        return []
    return [r for r in results if r['dataset'] == dataset and r['model'] == model and r['phase'] == 'seed'
            and r['status'] == 'ok' and (best is None or r['config'] == best['config'])]


def migrate_file(path, out=None):
    """The records of ``path`` in the current format, written to ``out`` (default: ``path`` itself, atomically)."""
    with open(path) as f:
        old = [json.loads(line) for line in f if line.strip()]
    recs = [migrate(r, r['model'] in MODELS and MODELS[r['model']].trainable) for r in old]
    atomic.write_text(out or path, ''.join(json.dumps(r) + '\n' for r in recs))
    return recs
