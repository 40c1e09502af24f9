"""The house keeps its shape: the paper's files at the top, the suite one installable package below them whose
arrows run one way, commands thin CLIs in scripts/; and a dataset and a metric are each added in one place (a model:
tests/test_registry.py)."""
import ast
import glob
import json
import os

import pytest
import torch

import train
from evaluation import METRICS, evaluate, register_metric
from phr.models.registry import build_model
from phr.sweep import datasets, plan as plan_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imports_of(path):
    tree = ast.parse(open(path).read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f'{node.module}.{a.name}' for a in node.names}
    return out


def source_files():
    return [f for f in glob.glob(os.path.join(ROOT, '**', '*.py'), recursive=True)
            if '/tests/' not in f and '/.' not in f and '/build/' not in f]


def test_the_paper_at_the_top_the_suite_in_one_package_and_no_sys_path():
    root = sorted(os.path.basename(f) for f in glob.glob(os.path.join(ROOT, '*.py')))
    assert root == ['data_load.py', 'evaluation.py', 'model.py', 'train.py']
    for f in source_files():
        text = open(f).read()
        assert 'sys.path.insert' not in text and 'sys.path.append' not in text, f
    for f in glob.glob(os.path.join(ROOT, 'scripts', '*.py')):   # each command: flags -> a call of the package
        assert len(open(f).read().splitlines()) <= 45, f


def test_arrows_run_one_way():
    package = [f for f in source_files() if f'{os.sep}phr{os.sep}' in f]
    for f in package + [os.path.join(ROOT, n) for n in ('model.py', 'data_load.py', 'evaluation.py')]:
        names = imports_of(f)
        assert 'train' not in names, f                      # nothing imports the command
        assert not any(n.startswith('scripts') for n in names), f
    for f in glob.glob(os.path.join(ROOT, 'phr', 'models', '*.py')) + [os.path.join(ROOT, 'model.py')]:
        names = imports_of(f)
        assert not names & {'evaluation', 'phr.data.posts', 'phr.data.synthetic', 'phr.training', 'phr.sweep'}, f
        assert not any(n.startswith(('phr.training', 'phr.sweep', 'phr.data.posts', 'evaluation')) for n in names), f
    assert not any(n.startswith('phr') for n in imports_of(os.path.join(ROOT, 'data_load.py')))


def test_a_metric_is_one_function_and_one_registration(tiny_data, tiny_dir, tmp_path):
    """MRR@K added by one registration: reported by evaluate at every K, equal to a literal loop, and a selection
    metric of train.py (--select mrr@10)."""
    @register_metric('mrr')
    def mrr(ranks, is_pos, num_pos, k):
        first = torch.where(is_pos & (ranks < k), ranks, torch.full_like(ranks, k)).min(1).values
        return torch.where(first < k, 1.0 / (first.float() + 1), torch.zeros(()))
    try:
        torch.manual_seed(0)
        model = build_model('user_popularity', tiny_data)
        got = evaluate(model, tiny_data.val, (5, 10))
        assert {'mrr@5', 'mrr@10'} <= set(got)
        with torch.no_grad():
            from phr.core.base import Posts
            v = tiny_data.val
            scores = model.score({}, v.users, Posts(ids=v.videos), v.candidates)
        want = []
        for r in range(len(v)):
            cand = [(s, bool(p)) for s, p, ok in zip(scores[r].tolist(), v.pos_mask[r].tolist(), v.valid[r].tolist())
                    if ok]
            rr = 0.0
            for rank, (s, p) in enumerate(sorted(cand, key=lambda t: (-t[0], t[1]))):   # ties: negatives first
                if p:
                    rr = 1.0 / (rank + 1) if rank < 10 else 0.0
                    break
            want.append(rr)
        assert got['mrr@10'] == pytest.approx(sum(want) / len(want), abs=1e-6)
        best = train.main(['--data_path', tiny_dir, '--model_name', 'UTM', '--dim_latent', '8', '--num_epoch', '2',
                           '--select', 'mrr@10', '--save_dir', str(tmp_path), '--no_progress'])
        lines = [json.loads(x) for x in open(tmp_path / 'UTM' / 'metrics.jsonl')]
        assert best['epoch'] == max(lines, key=lambda x: (x['val']['mrr@10'], x['val']['ndcg@10']))['epoch']
    finally:
        del METRICS['mrr']
    with pytest.raises(SystemExit, match='--select'):
        train.main(['--data_path', tiny_dir, '--select', 'mrr@10'])


def test_a_dataset_is_one_declared_line(tmp_path):
    """A dataset joins the sweep by one ``declare``: the sweep builds it with its command, titles it, applies its
    settings; no name is special-cased in the sweep's code."""
    d = datasets.declare('tiny_test', 'a tiny generated set', ['generate.py', '--preset', 'demo', '--scale', '0.1',
                                                                '--num_neg', '50', '--seed', '7'],
                         folder=str(tmp_path / 'tiny_test'), max_epoch=2)
    try:
        assert plan_lib.dataset_path('tiny_test') == d.path == str(tmp_path / 'tiny_test')
        assert os.path.exists(os.path.join(plan_lib.prepare('tiny_test'), 'test.npy'))
        assert datasets.title('tiny_test') == 'a tiny generated set'
        p = plan_lib.Plan(datasets=['tiny_test'], models=['UTM'])
        assert p.setting('tiny_test', 'max_epoch') == 2 and p.setting('tiny_test', 'patience') == p.patience
    finally:
        del datasets.DATASETS['tiny_test']


def test_each_knob_default_is_written_once():
    """A model's knobs have their defaults in its ``hparams`` declarations only: its constructor takes them as
    keyword arguments without defaults (the registry fills them in), so no default can drift from the declaration."""
    import inspect
    from phr.models.registry import MODELS
    for name, spec in MODELS.items():
        for cls in spec.cls.__mro__:
            if '__init__' not in vars(cls) or not hasattr(cls, 'hparams'):
                continue
            params = inspect.signature(cls.__init__).parameters
            for h in cls.hparams:
                if h.name in params:
                    assert params[h.name].default is inspect.Parameter.empty, (name, cls.__name__, h.name)
