"""scripts/full_rank.py: test metrics with every hashtag a candidate."""
import os
import sys

import numpy as np
import pytest

from conftest import cli
import torch

from phr.core.base import Posts as P


from phr.experiments import full_rank
from evaluation import evaluate_rows
from phr.training.checkpoint import load_checkpoint
from phr.models.registry import build_model


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
            s = model.score(enc, t.users[r:r + 1], P(ids=t.videos[r:r + 1]), torch.arange(H)[None])[0].tolist()
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
        cli(full_rank, ['--data_path', tiny_dir, 'no_equals_sign'])
    with pytest.raises(SystemExit, match='no such checkpoint'):
        cli(full_rank, ['--data_path', tiny_dir, f'X={tmp_path / "missing.pt"}'])
    with pytest.raises(SystemExit, match='no such dataset folder'):
        cli(full_rank, ['--data_path', str(tmp_path / 'nowhere')])
    # issue 29 (11): a checkpoint labelled as a floor would replace the floor every '- floor' interval is against
    with pytest.raises(SystemExit, match='label user_popularity is reserved'):
        cli(full_rank, ['--data_path', tiny_dir, f'user_popularity={tmp_path / "x.pt"}'])
    with pytest.raises(SystemExit, match='given twice'):
        cli(full_rank, ['--data_path', tiny_dir, f'a={tmp_path / "x.pt"}', f'a={tmp_path / "y.pt"}'])
    with pytest.raises(SystemExit, match='--rows must be at least 1'):
        cli(full_rank, ['--data_path', tiny_dir, '--rows', '0'])
    with pytest.raises(SystemExit, match="--device 'bogus' is not a device"):
        cli(full_rank, ['--data_path', tiny_dir, '--device', 'bogus'])


def test_calibrate_full_fits_the_count_weight_on_full_ranking_validation(tiny_dir, tmp_path, capsys):
    import train
    from data_load import load_dataset
    d = load_dataset(tiny_dir, verbose=False)
    train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '2', '--dim_latent', '8',
                '--save_dir', str(tmp_path), '--run_name', 'cal', '--no_progress', '--calibrate_counts'])
    path = str(tmp_path / 'cal' / 'best.pt')
    model, ckpt = load_checkpoint(path, d)
    w0 = ckpt['best']['count_weight_trained']
    scales = (0.5, 1, 4, 16)
    factor, trained, table = full_rank.calibrate_full(model, d, d.val, scales, rows=7, trained=w0)
    assert trained == pytest.approx(w0) and [t[0] for t in table] == list(scales)
    # each factor's metrics are those of scoring the validation rows under full ranking with w set to it
    literal = load_checkpoint(path, d)[0].eval()
    for f, r, n in table:
        with torch.no_grad():
            literal.count_weight.fill_(w0 * f)
        rows = full_rank.full_rank_rows(literal, d, d.val, rows=5)
        assert (r, n) == pytest.approx((rows['recall@10'].mean(), rows['ndcg@10'].mean()), abs=1e-6)
    assert (factor, ) == max(table, key=lambda t: (t[1], t[2], -abs(np.log(t[0]))))[:1]
    assert float(model.count_weight.detach()) == pytest.approx(w0 * factor)
    # the command adds a LABEL@full_val row for a model with a count term, none for one without
    capsys.readouterr()
    res = cli(full_rank, ['--data_path', tiny_dir, f'plus={path}', '--calibrate_full', '--scales', '1', '4'])
    assert set(res) == {'user_popularity', 'popularity', 'plus', 'plus@full_val'}
    assert 'full-ranking validation R@10 / NDCG@10: x1 ' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(full_rank, ['--data_path', tiny_dir, f'plus={path}', '--calibrate_full', '--split', 'val'])


def test_train_protocol_full_selects_and_reports_full_ranking_metrics(tiny_dir, tiny_data, tmp_path):
    # under --protocol full the epoch line, the selection and the test are every-hashtag metrics: the best epoch's
    # logged test metrics are those of full_rank.py on the kept checkpoint
    import json
    import train
    best = train.main(['--data_path', tiny_dir, '--protocol', 'full', '--num_epoch', '2', '--dim_latent', '8',
                       '--save_dir', str(tmp_path), '--no_progress', '--seed', '1'])
    lines = [json.loads(x) for x in open(tmp_path / 'GCN_PHR' / 'metrics.jsonl')]
    assert best['test'] == lines[best['epoch']]['test']
    model, ckpt = load_checkpoint(str(tmp_path / 'GCN_PHR' / 'best.pt'), tiny_data)
    assert ckpt['config']['protocol'] == 'full'
    rows = full_rank.full_rank_rows(model, tiny_data, tiny_data.test, rows=3)
    assert best['test']['recall@10'] == pytest.approx(rows['recall@10'].mean(), abs=1e-6)
    assert best['test']['ndcg@10'] == pytest.approx(rows['ndcg@10'].mean(), abs=1e-6)
    # and differ from the sampled protocol's numbers of the same checkpoint
    assert evaluate_rows(model, tiny_data.test, ks=(10,))['recall@10'].mean() > rows['recall@10'].mean()


def test_full_split_blocks_are_bounded_and_exact(tiny_data):
    # a full split stores no [rows, H] table; blocks of any size give the same per-row metrics
    from evaluation import FullSplit, full_split
    fs = full_split(tiny_data, tiny_data.test)
    assert isinstance(fs, FullSplit) and len(fs) == len(tiny_data.test) and fs.num_hashtag == tiny_data.num_hashtag
    assert all(t.numel() <= 2 * len(fs) + tiny_data.vh_idx.numel() for t in (fs.users, fs.pos_ptr, fs.pos_idx))
    torch.manual_seed(0)
    model = build_model('USHM', tiny_data, dim=8).eval()
    a, b = (evaluate_rows(model, fs, ks=(5, 10), batch_size=n) for n in (1, 64))
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_knn_votes_against_a_literal_loop(tiny_data):
    # cosine of the post's features to every training post, the k most similar vote for their hashtags with
    # sim ** power; kNN adds mix * votes to the user's log(1 + count), kNN_content is the votes alone; both break
    # ties by 1e-5 x popularity / max popularity
    import torch.nn.functional as F
    knn = build_model('kNN', tiny_data, k=5, mix=2.0, power=2.0).eval()
    content = build_model('kNN_content', tiny_data, k=5, power=2.0).eval()
    feats = tiny_data.features
    pool = sorted(set(tiny_data.train[:, 1].tolist()))
    t, H = tiny_data.test, tiny_data.num_hashtag
    counts = {}
    for u, h in zip(tiny_data.train[:, 0].tolist(), tiny_data.train[:, 2].tolist()):
        counts[(u, h)] = counts.get((u, h), 0) + 1
    uses = torch.tensor([sum(c for (_, h2), c in counts.items() if h2 == h) for h in range(H)], dtype=torch.float)
    ties = 1e-5 * uses / uses.max()
    for r in range(5):
        v, u = int(t.videos[r]), int(t.users[r])
        sims = F.cosine_similarity(feats[v][None], feats[pool], dim=1)
        top = torch.topk(sims, 5)
        want = torch.zeros(H)
        for s, i in zip(top.values.tolist(), top.indices.tolist()):
            p = pool[i]
            for h in tiny_data.vh_idx[tiny_data.vh_ptr[p]:tiny_data.vh_ptr[p + 1]].tolist():
                want[h] += max(s, 0) ** 2
        with torch.no_grad():
            got_c = content.score({}, t.users[r:r + 1], P(ids=t.videos[r:r + 1]), torch.arange(H)[None])[0]
            got = knn.score({}, t.users[r:r + 1], P(ids=t.videos[r:r + 1]), torch.arange(H)[None])[0]
        assert torch.allclose(got_c, want + ties, atol=1e-7, rtol=1e-6)
        own = torch.tensor([counts.get((u, h), 0) for h in range(H)], dtype=torch.float)
        assert torch.allclose(got, 2.0 * want + torch.log1p(own) + ties, atol=1e-7, rtol=1e-6)
        zero = (want == 0) & (own == 0)                      # the ties: ordered by popularity, and by nothing else
        assert zero.sum() > 1 and torch.equal(torch.argsort(got[zero], stable=True),
                                              torch.argsort(uses[zero], stable=True))


def test_full_split_rows_come_back_in_the_splits_order(tiny_data):
    # full_split holds the rows grouped by user; per-row metrics still come back in the split's own row order
    import dataclasses
    from evaluation import full_split
    torch.manual_seed(0)
    model = build_model('GCN_PHR', tiny_data, dim=8).eval()
    t = tiny_data.test
    perm = torch.randperm(len(t), generator=torch.Generator().manual_seed(1))
    shuffled = dataclasses.replace(t, users=t.users[perm], videos=t.videos[perm])
    fs = full_split(tiny_data, shuffled)
    assert bool((fs.users[1:] >= fs.users[:-1]).all()) and not torch.equal(fs.order, torch.arange(len(t)))
    a = evaluate_rows(model, full_split(tiny_data, t), ks=(10,))
    b = evaluate_rows(model, fs, ks=(10,))
    for k in a:
        assert torch.allclose(b[k], a[k][perm], atol=1e-6), k


@pytest.mark.parametrize('name', ['GCN_PHR', 'GCN_PHR_plus', 'ConTagNet'])
def test_full_ranking_blocks_in_threads_equal_blocks_one_after_another(tiny_data, name, monkeypatch):
    # on a CPU with several intra-op threads, full-ranking blocks are scored by that many threads at once (each
    # op on one thread, a workspace per thread); per-row metrics and means are exactly those of the blocks scored
    # one after another with every op on those threads, and the intra-op thread count comes back
    import evaluation
    from evaluation import block_threads, evaluate, full_split
    torch.manual_seed(0)
    model = build_model(name, tiny_data, dim=8).eval()
    fs = full_split(tiny_data, tiny_data.test)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert block_threads(fs, 10) == 3 and block_threads(fs, 2) == 2 and block_threads(fs, 1) == 1
        assert block_threads(tiny_data.test, 10) == 1          # the sampled protocol: one block after another
        many = evaluate_rows(model, fs, ks=(5, 10), batch_size=2)
        mean_many = evaluate(model, fs, batch_size=2)
        assert torch.get_num_threads() == 3
        monkeypatch.setattr(evaluation, 'block_threads', lambda split, n: 1)
        one = evaluate_rows(model, fs, ks=(5, 10), batch_size=2)
        mean_one = evaluate(model, fs, batch_size=2)
    finally:
        torch.set_num_threads(threads)
    assert one['recall@10'].shape == (len(tiny_data.test),) and one['recall@10'].sum() > 0
    for k in one:
        assert torch.equal(one[k], many[k]), k
    assert mean_one == mean_many


def test_full_ranking_threads_restore_the_thread_count_when_a_block_fails(tiny_data, monkeypatch):
    from evaluation import evaluate, full_split
    model = build_model('GCN_PHR', tiny_data, dim=8).eval()

    def fails(*args):
        raise RuntimeError('scorer failed')

    monkeypatch.setattr(model, 'score', fails)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match='scorer failed'):
            evaluate(model, full_split(tiny_data, tiny_data.test), batch_size=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
