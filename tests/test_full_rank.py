"""scripts/full_rank.py: test metrics with every hashtag a candidate."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))

import full_rank  # noqa: E402
from evaluation import evaluate_rows  # noqa: E402
from model import build_model  # noqa: E402


def test_more_candidates_never_raise_a_rows_recall(tiny_data):
    # every hashtag is a superset of a row's sampled candidates, and ties go against the positives in both, so no
    # positive can rank higher under full ranking
    torch.manual_seed(0)
    for name in ('user_popularity', 'popularity', 'GCN_PHR', 'USHM'):
        model = build_model(name, tiny_data).eval()
        sampled = evaluate_rows(model, tiny_data.test, ks=(10,))['recall@10'].numpy()
        full = full_rank.full_rank_rows(model, tiny_data, tiny_data.test, rows=7)['recall@10']
        assert (full <= sampled + 1e-6).all() and full.shape == sampled.shape, name
        assert full.mean() < sampled.mean() or name == 'popularity', name


@pytest.mark.parametrize('name', ['user_popularity', 'GCN_PHR'])
def test_against_a_literal_ranking_of_every_hashtag(tiny_data, name):
    # a positive's rank counts every hashtag scored higher, every tied non-positive, and every tied positive of a
    # lower hashtag id (column order of the full table); the floor ties often, a random GCN-PHR does not
    torch.manual_seed(0)
    model = build_model(name, tiny_data).eval()
    got = full_rank.full_rank_rows(model, tiny_data, tiny_data.test, rows=4)
    H, t = tiny_data.num_hashtag, tiny_data.test
    with torch.no_grad():
        enc = model.encode()
        for r in range(len(t)):
            s = model.score(enc, t.users[r:r + 1], t.videos[r:r + 1], torch.arange(H)[None])[0].tolist()
            v = int(t.videos[r])
            pos = sorted(tiny_data.vh_idx[tiny_data.vh_ptr[v]:tiny_data.vh_ptr[v + 1]].tolist())
            ranks = [sum(s[c] > s[h] or (s[c] == s[h] and (c not in pos or c < h)) for c in range(H) if c != h)
                     for h in pos]
            hits = [k for k in ranks if k < 10]
            idcg = sum(1 / np.log2(i + 2) for i in range(min(len(pos), 10)))
            assert got['recall@10'][r] == pytest.approx(len(hits) / len(pos), abs=1e-6)
            assert got['ndcg@10'][r] == pytest.approx(sum(1 / np.log2(k + 2) for k in hits) / idcg, abs=1e-5)


def test_bad_arguments_get_one_clear_error(tiny_dir, tmp_path):
    with pytest.raises(SystemExit, match='LABEL=CHECKPOINT'):
        full_rank.main(['--data_path', tiny_dir, 'no_equals_sign'])
    with pytest.raises(SystemExit, match='no such checkpoint'):
        full_rank.main(['--data_path', tiny_dir, f'X={tmp_path / "missing.pt"}'])
    with pytest.raises(SystemExit, match='no such dataset folder'):
        full_rank.main(['--data_path', str(tmp_path / 'nowhere')])


def test_calibrate_full_fits_the_count_weight_on_full_ranking_validation(tiny_dir, tmp_path, capsys):
    import train
    from data_load import load_dataset
    d = load_dataset(tiny_dir, verbose=False)
    train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '2', '--dim_latent', '8',
                '--save_dir', str(tmp_path), '--run_name', 'cal', '--no_progress', '--calibrate_counts'])
    path = str(tmp_path / 'cal' / 'best.pt')
    model, ckpt = train.load_checkpoint(path, d)
    w0 = ckpt['best']['count_weight_trained']
    scales = (0.5, 1, 4, 16)
    factor, trained, table = full_rank.calibrate_full(model, d, d.val, scales, rows=7, trained=w0)
    assert trained == pytest.approx(w0) and [t[0] for t in table] == list(scales)
    # each factor's metrics are those of scoring the validation rows under full ranking with w set to it
    literal = train.load_checkpoint(path, d)[0].eval()
    for f, r, n in table:
        with torch.no_grad():
            literal.count_weight.fill_(w0 * f)
        rows = full_rank.full_rank_rows(literal, d, d.val, rows=5)
        assert (r, n) == pytest.approx((rows['recall@10'].mean(), rows['ndcg@10'].mean()), abs=1e-6)
    assert (factor, ) == max(table, key=lambda t: (t[1], t[2], -abs(np.log(t[0]))))[:1]
    assert float(model.count_weight.detach()) == pytest.approx(w0 * factor)
    # the command adds a LABEL@full_val row for a model with a count term, none for one without
    capsys.readouterr()
    res = full_rank.main(['--data_path', tiny_dir, f'plus={path}', '--calibrate_full', '--scales', '1', '4'])
    assert set(res) == {'user_popularity', 'popularity', 'plus', 'plus@full_val'}
    assert 'full-ranking validation R@10 / NDCG@10: x1 ' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        full_rank.main(['--data_path', tiny_dir, f'plus={path}', '--calibrate_full', '--split', 'val'])
