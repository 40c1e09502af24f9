"""Tiny datasets built in temporary folders by the project's own generator and partition script."""
import os
import shutil

import pytest

from phr.data import synthetic as generate
from data_load import load_dataset


def cli(module, argv):
    """What ``python scripts/<command>.py ARGV`` does: the command module's flags, then its ``run``."""
    return module.run(module.build_parser().parse_args([str(a) for a in argv]))


TINY = ['--preset', 'demo', '--scale', '0.1', '--num_neg', '50', '--seed', '7']   # 400 videos, 20 users, 110 tags


def make_tiny(path, *extra):
    cli(generate, TINY + ['--out', str(path), *extra])
    return str(path)


@pytest.fixture(scope='session')
def tiny_dir(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp('tiny') / 'data')


@pytest.fixture(scope='session')
def tiny_data(tiny_dir):
    return load_dataset(tiny_dir, verbose=False)


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    dst = tmp_path / 'data'
    shutil.copytree(tiny_dir, dst)
    return str(dst)


def assert_trained_and_kept(best, run_dir, data, loss_falls=True):
    """What a training run through train.py must show: its loss went down over the epochs (metrics.jsonl), and the
    best.pt it kept scores, evaluated again, exactly the validation recall@10 it reported. Stronger than
    ``recall > 0``, which a constant or untrained scorer can pass. ``loss_falls=False`` for a loss whose value is
    not comparable across epochs (hard_bpr: its negatives are the hardest of the model as it is then)."""
    import json
    from phr.training.checkpoint import load_checkpoint
    from evaluation import evaluate
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        loss = [json.loads(line)['loss'] for line in f]
    assert len(loss) >= 2 and (loss[-1] < loss[0] or not loss_falls), loss
    model = load_checkpoint(os.path.join(run_dir, 'best.pt'), data)[0].eval()
    again = evaluate(model, data.val, ks=(10,))['recall@10']
    assert abs(again - best['val']['recall@10']) < 1e-6, (again, best['val'])
