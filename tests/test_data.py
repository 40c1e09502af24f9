import os

import numpy as np
import pytest
import torch

import data_load
from conftest import make_tiny, cli
from data_load import DataError, load_dataset
from phr.data import folder
from phr.data.partition import partition


def files(path):
    return {n: np.load(os.path.join(path, n)) for n in ('train.npy', 'val.npy', 'test.npy', 'video_hashtag.npy')}


def test_load_generated_folder(tiny_data):
    d = tiny_data
    assert (d.num_user, d.num_hashtag, d.num_video) == (20, 110, 400)
    assert d.features.shape == (400, 2048 + 128 + 100) and d.features.dtype == torch.float32
    assert d.feature_dims == (2048, 128, 100)
    # rows L2-normalised per block
    assert torch.allclose(d.features[:, 2048 + 128:].norm(dim=1), torch.ones(400), atol=1e-4)
    for split in (d.val, d.test):
        assert split.num_neg == 50
        # every row: exactly num_neg negatives, then the video's own hashtags as positives
        assert (split.valid[:, :50]).all() and not split.pos_mask[:, :50].any()
        for r in range(len(split)):
            v = split.videos[r]
            own = set(d.vh_idx[d.vh_ptr[v]:d.vh_ptr[v + 1]].tolist())
            assert set(split.candidates[r][split.pos_mask[r]].tolist()) == own
            assert not own & set(split.candidates[r, :50].tolist())
    # the graph: triples grouped by pair, pair counts = group sizes
    g = d.graph
    assert (g.triple_pair[1:] >= g.triple_pair[:-1]).all()
    assert torch.equal(torch.bincount(g.triple_pair), g.pair_count)
    assert torch.equal(g.pair_user[g.triple_pair], g.triple_user)
    assert torch.equal(g.pair_hashtag[g.triple_pair], g.triple_hashtag)
    st = d.stats()
    assert 3.0 <= st['mean_hashtags_per_video'] <= 5.0


def test_every_row_has_num_neg_negatives_disjoint_from_positives(tiny_dir):
    U, H = 20, 110
    vh = np.load(os.path.join(tiny_dir, 'video_hashtag.npy'))
    for name in ('val.npy', 'test.npy'):
        rows = np.load(os.path.join(tiny_dir, name))
        for row in rows:
            own = set(vh[row[1] - U - H][vh[row[1] - U - H] >= 0].tolist())
            neg = row[2:52]
            pos = row[52:][row[52:] >= 0]
            assert len(set(neg.tolist())) == 50 and set(pos.tolist()) == own
            assert not set(neg.tolist()) & own
            assert ((neg >= U) & (neg < U + H)).all()


def test_partition_ratios_per_user(tiny_dir):
    U, H = 20, 110
    raw = [line.split(';')[0] for line in open(os.path.join(tiny_dir, 'video_info.txt'))]
    owner = np.array(raw, dtype=np.int64)
    f = files(tiny_dir)
    train_videos = np.unique(f['train.npy'][:, 1]) - U - H
    for u in range(U):
        n = int((owner == u).sum())
        n_train = int((owner[train_videos] == u).sum())
        n_val = int((f['val.npy'][:, 0] == u).sum())
        n_test = int((f['test.npy'][:, 0] == u).sum())
        assert n_train == int(n * 0.8) and n_val == (n - n_train) // 2 and n_val + n_test + n_train == n
        assert n_val >= 1 and n_test >= 1


def test_partition_is_deterministic(tiny_copy, tmp_path):
    before = files(tiny_copy)
    partition(tiny_copy, seed=7, num_neg=50, verbose=False)
    after = files(tiny_copy)
    for n in before:
        assert np.array_equal(before[n], after[n]), n
    partition(tiny_copy, seed=8, num_neg=50, verbose=False)
    assert not np.array_equal(before['val.npy'], files(tiny_copy)['val.npy'])


def test_num_neg_adapts_to_few_hashtags(tiny_copy, capsys):
    st = partition(tiny_copy, seed=7, num_neg=1000)
    assert st['num_neg'] < 110 and 'lowered' in capsys.readouterr().out
    assert load_dataset(tiny_copy, verbose=False).val.num_neg == st['num_neg']


def test_legacy_pickled_form_needs_opt_in(tmp_path, tiny_data, capsys):
    path = make_tiny(tmp_path / 'legacy', '--legacy')
    assert np.load(os.path.join(path, 'val.npy'), allow_pickle=True).dtype == object
    with pytest.raises(DataError, match=r'pickled.*--allow_pickle.*python scripts/dataset.py convert'):
        load_dataset(path, verbose=False)
    d = load_dataset(path, allow_pickle=True, verbose=False)
    assert 'unpickling' in capsys.readouterr().err
    for name in ('train', 'vh_idx', 'vh_ptr', 'train_hashtags'):
        assert torch.equal(getattr(d, name), getattr(tiny_data, name)), name
    for s in ('val', 'test'):
        for f in ('users', 'videos', 'candidates', 'pos_mask', 'valid'):
            assert torch.equal(getattr(getattr(d, s), f), getattr(getattr(tiny_data, s), f)), (s, f)
    # convert once, then it loads without the flag
    cli(folder, ['convert', path, '--allow_pickle'])
    d2 = load_dataset(path, verbose=False)
    assert torch.equal(d2.test.candidates, tiny_data.test.candidates)
    assert os.path.exists(os.path.join(path, 'train.pickled.npy'))


def _rewrite(path, name, fn):
    arr = np.load(os.path.join(path, name))
    np.save(os.path.join(path, name), fn(arr))


def _keep_ten_negatives_in_row_0(a):
    a[0, 2:] = np.concatenate([a[0, 42:], np.full(40, -1)])
    return a


def _drop_one_negative_of_row_0(a):
    a = np.concatenate([a, np.full((len(a), 1), -1)], 1)
    a[0, 2:] = np.concatenate([a[0, 3:], [-1]])
    return a


@pytest.mark.parametrize('breakage, message', [
    (lambda p: os.remove(os.path.join(p, 'test.npy')), r'test\.npy: missing file'),
    (lambda p: open(os.path.join(p, 'video_list.txt'), 'a').write('extra\n'),
     r'FeatureVideo_normal\.npy: wrong shape \(400, 2048\); expected \[401 videos'),
    (lambda p: _rewrite(p, 'train.npy', lambda a: np.concatenate([a, [[0, 25, 3]]])),
     r'train\.npy: video \(column 1\) id 25 outside its range \[130, 530\)'),
    (lambda p: _rewrite(p, 'train.npy', lambda a: np.concatenate([a, [[0, 200, 200]]])),
     r'train\.npy: hashtag \(column 2\) id 200 outside its range \[20, 130\)'),
    (lambda p: _rewrite(p, 'train.npy', lambda a: a.astype(np.float64)), r'train\.npy: wrong dtype float64'),
    (lambda p: _rewrite(p, 'train.npy', lambda a: a[:, :2]), r'train\.npy: wrong shape'),
    (lambda p: _rewrite(p, 'val.npy', lambda a: np.where(np.arange(a.shape[1]) >= 52, -1, a) * (
        np.arange(len(a))[:, None] == 3) + a * (np.arange(len(a))[:, None] != 3)),
     r'val\.npy: row 3 .* has no positive hashtag'),
    (lambda p: _rewrite(p, 'test.npy', _keep_ten_negatives_in_row_0),
     r'test\.npy: row 0 .*has only \d+ candidates, fewer negatives than the expected 50'),
    (lambda p: _rewrite(p, 'test.npy', _drop_one_negative_of_row_0),
     r'test\.npy: row 0: hashtag \d+ is among the first 50 \(negative\) candidates but is one of the video'),
    (lambda p: _rewrite(p, 'val.npy', lambda a: np.concatenate([a[:, :3], a[:, 2:3], a[:, 4:]], 1)),
     r'val\.npy: row 0 lists hashtag \d+ twice'),
    (lambda p: _rewrite(p, 'FeatureText_normal.npy', lambda a: np.where(np.arange(len(a))[:, None] == 7, np.nan, a)),
     r'FeatureText_normal\.npy: NaN or inf feature in row 7'),
    (lambda p: _rewrite(p, 'FeatureAudio_avg_normal.npy', lambda a: a[:10]), r'FeatureAudio_avg_normal\.npy: wrong shape'),
    (lambda p: _rewrite(p, 'video_hashtag.npy', lambda a: a[:-1]), r'video_hashtag\.npy: 399 rows'),
])
def test_bad_input_gives_one_clear_error(tiny_copy, breakage, message):
    breakage(tiny_copy)
    with pytest.raises(DataError, match=message):
        load_dataset(tiny_copy, verbose=False)


def test_bad_raw_line(tiny_copy):
    fname = os.path.join(tiny_copy, 'video_info.txt')
    lines = open(fname).readlines()
    lines[4] = '3;x\n'
    open(fname, 'w').writelines(lines)
    with pytest.raises(DataError, match=r'video_info\.txt: line 5 is not "user;h1:h2:..."'):
        partition(tiny_copy, verbose=False)
