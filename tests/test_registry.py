"""One model interface, one registry, one checkpoint loader (model.py)."""
import os
import random
import subprocess
import sys

import pytest

from conftest import cli
import torch

from phr.core.base import Posts as P
from torch import nn

from phr.models import registry as model_lib
from phr import serve as recommend
import train
from data_load import load_dataset
from phr.training.checkpoint import CheckpointError, load_checkpoint
from phr.core.base import DIM, HParam, Recommender
from phr.models.registry import build_model, register

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ToyModel(Recommender):
    """A user bias plus a linear read of the post's features per hashtag: one class ..."""

    hparams = (DIM, HParam('scale', 1.0, 'a factor on the read'))   # its knobs, declared beside it

    def __init__(self, data, dim=64, scale=1.0):
        super().__init__()
        self.num_hashtag, self.scale = data.num_hashtag, scale
        self.set_features(data.features)
        self.read = self.feature_linear(dim)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        self.user_bias = nn.Embedding(data.num_user, 1)

    def score(self, enc, users, videos, hashtags):
        q = self.read(self.video_features(videos)) * self.scale               # [B, d]
        return (self.hashtag_emb(hashtags) @ q.unsqueeze(-1)).squeeze(-1) + self.user_bias(users)


@pytest.fixture
def toy_registered():
    register('toy', ToyModel, 'a toy model')      # ... and one registry line
    yield 'toy'
    model_lib.MODELS.pop('toy')


def test_a_new_model_is_one_class_and_one_registry_line(toy_registered, tiny_dir, tmp_path, capsys):
    # it and its own knob appear in --help (the parser is built from the registry when it is built)
    with pytest.raises(SystemExit):
        train.main(['--help'])
    out = ' '.join(capsys.readouterr().out.split())   # argparse wraps the help to the terminal's width
    assert 'toy: a toy model' in out and '--scale SCALE' in out and 'a factor on the read [toy; default 1.0]' in out
    # it trains through train.py, its knob reaching its constructor
    best = train.main(['--data_path', tiny_dir, '--model_name', 'toy', '--num_epoch', '2', '--dim_latent', '8',
                       '--scale', '0.5', '--save_dir', str(tmp_path), '--no_progress', '--l_r', '0.01'])
    assert best['epoch'] in (0, 1) and best['val']['recall@10'] > 0
    ckpt_path = str(tmp_path / 'toy' / 'best.pt')
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt['model_name'] == 'toy' and ckpt['model_args'] == {'dim': 8, 'scale': 0.5}
    assert load_checkpoint(ckpt_path, load_dataset(tiny_dir, verbose=False))[0].scale == 0.5
    # another model does not take its knob, nor it another model's: one clear error naming both
    with pytest.raises(SystemExit, match=r'GCN_PHR does not take --scale'):
        train.main(['--data_path', tiny_dir, '--scale', '2', '--save_dir', str(tmp_path / 'x')])
    with pytest.raises(SystemExit, match=r'toy does not take --num_layers \(its knobs: --dim_latent, --scale\)'):
        train.main(['--data_path', tiny_dir, '--model_name', 'toy', '--num_layers', '1',
                    '--save_dir', str(tmp_path / 'x')])
    # it loads in scripts/recommend.py (from the checkpoint's own model_args, whatever the flags say)
    data = load_dataset(tiny_dir, verbose=False)
    capsys.readouterr()
    ids, scores = cli(recommend, ['--checkpoint', ckpt_path, '--data_path', tiny_dir,
                                  '--author', data.user_names[0], '--video', data.video_names[0], '--topk', '3'])
    assert len(ids) == 3 and 'toy score' in capsys.readouterr().out
    # it resumes from its own arguments; a flag that would change the model is refused, naming it
    last = str(tmp_path / 'toy' / 'last.pt')
    common = ['--data_path', tiny_dir, '--num_epoch', '3', '--save_dir', str(tmp_path), '--run_name', 'toy',
              '--no_progress', '--PATH_weight_load', last]
    with pytest.raises(SystemExit, match='holds a toy model; --model_name GCN_PHR would change it'):
        train.main(common + ['--model_name', 'GCN_PHR'])
    with pytest.raises(SystemExit, match='trained with --dim_latent 8; --dim_latent 32 would change the model'):
        train.main(common + ['--dim_latent', '32'])
    train.main(common + ['--dim_latent', '8'])   # the same value changes nothing
    assert 'resumed from' in capsys.readouterr().out


def test_registry_gives_choices_labels_and_capabilities():
    assert list(model_lib.MODELS)[:4] == ['GCN_PHR', 'Net', 'var1', 'no_att']
    assert {'UTM', 'ConTagNet', 'CSMN', 'USHM', 'popularity', 'user_popularity'} <= set(model_lib.MODELS)
    assert train.build_parser()._option_string_actions['--model_name'].choices == tuple(model_lib.MODELS)
    assert not model_lib.MODELS['user_popularity'].cls.trainable
    assert model_lib.MODELS['GCN_PHR'].cls.losses == ('bpr',)
    assert 'softmax' in model_lib.MODELS['USHM'].cls.losses
    assert model_lib.MODELS['no_att'].fixed == {'attention': False}
    assert 'attention' not in [h.name for h in model_lib.MODELS['no_att'].hparams]


def test_recommend_does_not_import_train():
    code = 'import sys, phr.serve, phr.sweep.command, phr.experiments.bench; print("train" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


@pytest.mark.parametrize('name', list(model_lib.MODELS))
def test_new_post_scored_by_feature_rows(tiny_data, name):
    """score() takes feature rows of posts that are not in the dataset: the same scores as the same rows by id (test
    posts: TagRank scores validation posts by id out-of-fold, by design), and the model's feature table is never
    touched."""
    torch.manual_seed(0)
    m = build_model(name, tiny_data, **({'dim': 8} if 'dim' in [h.name for h in model_lib.MODELS[name].hparams] else {})).eval()
    table = m.features if hasattr(m, 'features') else None
    users, videos = tiny_data.test.users[:4], tiny_data.test.videos[:4]
    cand = tiny_data.test.candidates[:4]
    with torch.no_grad():
        enc = m.encode()
        by_id = m.score(enc, users, P(ids=videos), cand)
        by_row = m.score(enc, users, P(features=tiny_data.features[videos].clone()), cand)
    assert torch.allclose(by_id, by_row, atol=1e-6)
    if table is not None:
        assert m.features is table
    ids, scores = m.recommend(users, P(ids=videos), k=5)
    assert ids.shape == (4, 5) and torch.all(scores[:, :-1] >= scores[:, 1:])


def test_feature_rows_of_the_wrong_width_are_refused(tiny_data):
    m = build_model('GCN_PHR', tiny_data, dim=8)
    with pytest.raises(ValueError, match=r'feature rows of shape \[2, 5\]'):
        m.score(m.encode(), tiny_data.val.users[:2], P(features=torch.zeros(2, 5)), tiny_data.val.candidates[:2])


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


@pytest.fixture(scope='module')
def good_ckpt(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('ckpt')
    train.main(['--data_path', tiny_dir, '--num_epoch', '1', '--dim_latent', '8', '--save_dir', str(out),
                '--no_progress'])
    return str(out / 'GCN_PHR' / 'best.pt')


def _bad_checkpoint(kind, good, path):
    raw = open(good, 'rb').read()
    if kind == 'empty':
        open(path, 'wb').close()
    elif kind == 'truncated':
        open(path, 'wb').write(raw[:len(raw) // 2])
    elif kind == 'random bytes':
        open(path, 'wb').write(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    elif kind == 'pickle with code':
        torch.save({'model': {}, 'x': Evil()}, path)
    elif kind == 'missing key':
        torch.save({'config': {'data_path': 'x'}, 'epoch': 0}, path)
    elif kind == 'another model':
        ckpt = torch.load(good, weights_only=True)
        ckpt['model_args'] = dict(ckpt['model_args'], dim=16)   # weights of dim 8, arguments of dim 16
        torch.save(ckpt, path)
    elif kind == 'unknown model':
        ckpt = torch.load(good, weights_only=True)
        ckpt['model_name'] = 'GCN'
        torch.save(ckpt, path)
    elif kind == 'missing':
        pass
    return path


BAD = {'empty': 'empty file', 'truncated': 'not a readable checkpoint', 'random bytes': 'not a readable checkpoint',
       'pickle with code': 'holds objects other than tensors', 'missing key': 'no model weights',
       'another model': 'does not fit', 'unknown model': "model 'GCN' is not one of", 'missing': 'no such checkpoint'}


@pytest.mark.parametrize('kind', list(BAD))
def test_every_bad_checkpoint_gives_one_clear_error(kind, good_ckpt, tiny_dir, tiny_data, tmp_path, capfd):
    path = _bad_checkpoint(kind, good_ckpt, str(tmp_path / 'bad.pt'))
    with pytest.raises(CheckpointError, match=BAD[kind]) as e:
        load_checkpoint(path, tiny_data)
    assert str(e.value).startswith(path)
    # the same message from both command lines, as one line and no traceback
    for run in (lambda: train.main(['--data_path', tiny_dir, '--PATH_weight_load', path, '--save_dir',
                                    str(tmp_path / 'r'), '--no_progress']),
                lambda: cli(recommend, ['--checkpoint', path, '--data_path', tiny_dir, '--author',
                                        tiny_data.user_names[0], '--video', tiny_data.video_names[0]])):
        with pytest.raises(SystemExit, match=BAD[kind]) as e:
            run()
        assert str(e.value).startswith('error: ') and '\n' not in str(e.value)
    assert 'pwned' not in capfd.readouterr().out


def test_old_checkpoints_without_model_args_still_load(good_ckpt, tiny_data, tmp_path):
    ckpt = torch.load(good_ckpt, weights_only=True)
    del ckpt['model_name'], ckpt['model_args']           # as written before model_args existed
    torch.save(ckpt, tmp_path / 'old.pt')
    model, _ = load_checkpoint(str(tmp_path / 'old.pt'), tiny_data)
    assert model.dim == 8 and not model.training
