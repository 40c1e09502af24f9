"""A run's folder under ``--save_dir``: the names of its files (the one place they are spelled), choosing the folder
so an earlier run is never overwritten by accident, reading its per-epoch log, and writing its per-row test metrics."""
import json
import os

import numpy as np

from evaluation import evaluate_rows
from phr.util import atomic

METRICS = 'metrics.jsonl'        # one JSON line per epoch: loss, val, test, seconds
BEST = 'best.pt'                 # the checkpoint of the best validation epoch
LAST = 'last.pt'                 # the checkpoint of the last epoch (what a resume continues)
FINISH = 'finish.json'            # what a model's hook did to the best checkpoint (phr/training/hooks.py)
LOCK = '.lock'                   # held (flock) by the train.py writing the folder; it says that process's pid


def check_writable(path, what, folder=False):
    """Fail now, not after an epoch: ``path``'s folder (``path`` itself with ``folder``) can be made and written (a
    probe file is made and removed)."""
    path_is_folder, folder = folder, os.path.abspath(path) if folder else os.path.dirname(os.path.abspath(path))
    probe = os.path.join(folder, f'.write_test_{os.getpid()}')
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        above = folder
        while not os.path.exists(above) and os.path.dirname(above) != above:
            above = os.path.dirname(above)
        why = f'{above} is a file, not a folder' if not os.path.isdir(above) else e.strerror or e
        raise SystemExit(f'error: {what} {path}: cannot write there ({why})') from None
    if os.path.isdir(path) and not path_is_folder:
        raise SystemExit(f'error: {what} {path}: is a folder, expected a file path')


def choose_run_dir(save_dir, name, resume_path=None, overwrite=False):
    """The run folder: <save_dir>/<name>. One that holds an earlier run is never overwritten: the next free
    <name>_2, _3, ... is used instead (said so), unless ``overwrite`` or a resume from a checkpoint in it."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise SystemExit(f'error: --save_dir {save_dir}: is a file, expected a folder')
    if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == '..':
        raise SystemExit(f'error: --run_name {name}: must be a folder inside --save_dir (no absolute path, no ..)')
    base = os.path.join(save_dir, name)
    if os.path.exists(base) and not os.path.isdir(base):
        raise SystemExit(f'error: run folder {base}: is a file, expected a folder')
    taken = lambda d: os.path.exists(os.path.join(d, METRICS)) or os.path.exists(os.path.join(d, BEST))
    resuming_here = resume_path and os.path.abspath(os.path.dirname(resume_path)) == os.path.abspath(base)
    if overwrite or resuming_here or not taken(base):
        return base
    i = 2
    while taken(f'{base}_{i}'):
        i += 1
    print(f'{base} holds an earlier run: writing this one to {base}_{i} (--overwrite to replace it)')
    return f'{base}_{i}'


def lock(run_dir):
    """Take the run folder for this process (``atomic.hold`` on its LOCK file): a second train.py on the same
    folder (same --save_dir and --run_name, at once) gets one clear error instead of both writing best.pt and
    metrics.jsonl."""
    atomic.hold(os.path.join(run_dir, LOCK),
                lambda who: f'error: run folder {run_dir}: another train.py is writing it ({who}); '
                            f'wait for it to finish, or give this run another --run_name')


def read_metrics(run_dir):
    """The per-epoch records of a run folder's log, in order ([] when there is none)."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_test_rows(path, model, split, batch_size=None):
    """Per-row test Recall@10 and NDCG@10 (float32 .npz, row order of test.npy), written atomically."""
    rows = evaluate_rows(model, split, (10,), batch_size)
    atomic.save_npz(path, **{k: v.numpy().astype(np.float32) for k, v in rows.items() if k in ('recall@10', 'ndcg@10')})
