"""GCN_PHR_plus, the extension (not the paper's model): its switches, its count input, its losses."""
import itertools
import os
import re
import sys

import torch

from phr.models.plus import COUNT_SCALES
from evaluation import selection_key

from phr.core.base import Posts as P

import train
from phr.training import checkpoint
from phr.training import losses
from phr.training import hooks
from phr.training import sampling
from phr.models.registry import build_model
from conftest import assert_trained_and_kept, cli
from test_model import train_steps

PARTS = ('identity', 'counts', 'content')


def scores(model, data):
    model.eval()
    with torch.no_grad():
        return model.score(model.encode(), data.val.users, P(ids=data.val.videos), data.val.candidates)


def build(data, **parts):
    torch.manual_seed(0)
    return build_model('GCN_PHR_plus', data, dim=8, **parts)


def test_all_parts_off_is_gcn_phr_and_each_part_changes_the_output(tiny_data):
    torch.manual_seed(0)
    base = scores(build_model('GCN_PHR', tiny_data, dim=8), tiny_data)
    off = build(tiny_data, identity=False, counts=False, content=False)
    assert torch.allclose(scores(off, tiny_data), base, atol=1e-6)
    outs = {}
    for on in PARTS:
        m = build(tiny_data, **{p: p == on for p in PARTS})
        train_steps(m, tiny_data, steps=2)    # so learned terms that start at zero move off it
        outs[on] = scores(m, tiny_data)
        assert not torch.allclose(outs[on], base, atol=1e-4), on
    for a, b in itertools.combinations(PARTS, 2):
        assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)
    # the count term's initial weight: w log(1 + c) at init, exactly
    w1, w5 = build(tiny_data), build(tiny_data, count_weight=5.0)
    assert w5.count_weight.item() == 5.0
    u, c, v = tiny_data.val.users, tiny_data.val.candidates, tiny_data.val.videos
    assert torch.allclose(scores(w5, tiny_data) - scores(w1, tiny_data), 4 * w1.log_count(u, c, P(ids=v)), atol=1e-5)


def test_counts_come_from_training_triples_only(tiny_data):
    m = build(tiny_data)
    H = tiny_data.num_hashtag
    train_counts = {}
    for u, h in zip(tiny_data.train[:, 0].tolist(), tiny_data.train[:, 2].tolist()):
        train_counts[(u, h)] = train_counts.get((u, h), 0) + 1
    # every (user, hashtag) of the val and test rows: log(1 + its count in train.npy), 0 if never in training
    for split in (tiny_data.val, tiny_data.test):
        got = m.log_count(split.users, split.candidates, P(ids=split.videos))
        want = torch.tensor([[torch.log1p(torch.tensor(float(train_counts.get((u, h), 0)))).item()
                              for h in row] for u, row in zip(split.users.tolist(), split.candidates.tolist())])
        assert torch.allclose(got, want, atol=1e-6)
    # a training post: its own use is left out (leave-one-out), so c_uh - 1 for its own hashtags
    tr = tiny_data.train[:64]
    got = m.log_count(tr[:, 0], tr[:, 2:3], P(ids=tr[:, 1]))[:, 0]
    want = torch.log1p(torch.tensor([train_counts[(u, h)] - 1.0 for u, h in zip(tr[:, 0].tolist(),
                                                                                 tr[:, 2].tolist())]))
    assert torch.allclose(got, want, atol=1e-6)
    # the same query by the post's feature row (a new post) is not left out
    assert torch.allclose(m.log_count(tr[:, 0], tr[:, 2:3], P(features=tiny_data.features[tr[:, 1]]))[:, 0],
                          torch.log1p(torch.exp(want)), atol=1e-5)
    # and a held-out positive that its user never used in training gets 0: no val/test triple leaks in
    held = [(u, h) for split in (tiny_data.val, tiny_data.test)
            for u, row, pos in zip(split.users.tolist(), split.candidates.tolist(), split.pos_mask.tolist())
            for h, p in zip(row, pos) if p and (u, h) not in train_counts]
    assert held, 'the tiny data should hold new (user, hashtag) pairs in val/test'
    u = torch.tensor([x[0] for x in held])
    h = torch.tensor([[x[1]] for x in held])
    assert not m.log_count(u, h).any()
    assert m.count_keys.numel() == len(train_counts) and H == m.num_hashtag
    assert (m.count_keys[1:] > m.count_keys[:-1]).all()   # the lookup's binary search needs sorted keys


def test_sampled_softmax_and_hard_bpr_against_literal_loops(tiny_data):
    m = build(tiny_data)
    sampler = sampling.TripleSampler(tiny_data, num_neg=5)
    torch.manual_seed(3)
    batch = sampler.__getitems__(list(range(32)))
    assert batch.shape == (32, 3 + 5)
    for row in batch:   # the negatives are never hashtags of the post
        assert not sampler.on_video(row[1].repeat(5), row[3:]).any()
    with torch.no_grad():
        s = m(batch[:, 0], P(ids=batch[:, 1]), batch[:, 2:])
        got = losses.sampled_softmax_step(m, batch, sampler)
        want = sum(-torch.log(torch.exp(r[0]) / torch.exp(r).sum()) for r in s.double())
        assert torch.allclose(got.double(), want, atol=1e-4)
        got = losses.hard_bpr_step(m, batch, sampler)
        want = sum(-torch.log2(torch.sigmoid(r[0] - max(r[1:]))) for r in s.double())
        assert torch.allclose(got.double(), want, atol=1e-4)
        # bpr with K negatives: the sum over the K pairs; with K = 1 the authors' loss as before
        got = losses.bpr_step(m, batch, sampler)
        want = sum(-torch.log2(torch.sigmoid(r[0] - r[k])) for r in s.double() for k in range(1, 6))
        assert torch.allclose(got.double(), want, atol=1e-3)


def test_popularity_negatives_follow_training_uses(tiny_data):
    sampler = sampling.TripleSampler(tiny_data, num_neg=1, negatives='popularity')
    torch.manual_seed(0)
    negs = torch.cat([sampler.__getitems__(list(range(len(sampler))))[:, 3] for _ in range(20)])
    uses = torch.bincount(tiny_data.train[:, 2], minlength=tiny_data.num_hashtag).float()
    freq = torch.bincount(negs, minlength=tiny_data.num_hashtag).float()
    top = torch.argsort(uses, descending=True)[:10]
    rare = torch.nonzero(uses == 1).squeeze(1)
    assert freq[top].mean() > 3 * freq[rare].mean()


def test_one_step_moves_every_parameter(tiny_data):
    m = build(tiny_data)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    train_steps(m, tiny_data, steps=1)
    for k, v in m.named_parameters():
        assert not torch.equal(before[k], v.detach()), f'{k} did not change after one step'


def test_trains_through_train_py_with_every_loss(tiny_dir, tiny_data, tmp_path, capsys):
    for loss, k, neg in (('bpr', 1, 'uniform'), ('sampled_softmax', 4, 'popularity'), ('hard_bpr', 4, 'uniform')):
        best = train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '2',
                           '--dim_latent', '8', '--loss', loss, '--num_train_neg', str(k), '--neg_sampling', neg,
                           '--save_dir', str(tmp_path), '--run_name', loss, '--no_progress'])
        assert_trained_and_kept(best, tmp_path / loss, tiny_data, loss_falls=loss != 'hard_bpr')
        ckpt = torch.load(tmp_path / loss / 'best.pt', weights_only=True)
        assert ckpt['model_args']['identity'] and ckpt['model_args']['counts'] and ckpt['model_args']['content']
    # served by scripts/recommend.py like every other model: a dataset post, and the same post as a new feature row
    import numpy as np
    from phr import serve as recommend
    from data_load import load_dataset
    d = load_dataset(tiny_dir, verbose=False)
    ckpt = str(tmp_path / 'bpr' / 'best.pt')
    v, u = int(d.test.videos[0]), int(d.test.users[0])        # a held-out post: no leave-one-out applies
    np.save(tmp_path / 'post.npy', d.features[v].numpy())
    base = ['--checkpoint', ckpt, '--data_path', tiny_dir, '--author', d.user_names[u]]
    ids_v, s_v = cli(recommend, base + ['--video', d.video_names[v]])
    ids_f, s_f = cli(recommend, base + ['--features', str(tmp_path / 'post.npy')])
    assert torch.equal(ids_v, ids_f) and torch.allclose(s_v, s_f, atol=1e-5)
    # scripts/diagnose.py on the same checkpoint: scaling the count weight by 1 gives the model's own val metrics
    from phr.experiments import diagnose
    cli(diagnose, [ckpt, '--data_path', tiny_dir, '--count_scales', '1', '4'])
    out = capsys.readouterr().out
    own = re.search(r'^this model\s+([\d.]+)\s+([\d.]+)', out, re.M).groups()
    scaled = re.search(r'^\s+1\s+([\d.]+)\s+([\d.]+)$', out, re.M).groups()
    assert own == scaled and re.search(r'^\s+4\s+[\d.]+\s+[\d.]+$', out, re.M)
    assert torch.load(ckpt, weights_only=True)['model']['count_weight'] == \
        diagnose.load_checkpoint(ckpt, d)[0].count_weight   # the checkpoint's weight is left as it was


def test_user_negatives_come_half_from_the_users_own_hashtags(tiny_data):
    sampler = sampling.TripleSampler(tiny_data, num_neg=4, negatives='user')
    torch.manual_seed(0)
    batch = sampler.__getitems__(list(range(len(sampler))))
    own = {(u, h) for u, h in zip(tiny_data.graph.pair_user.tolist(), tiny_data.graph.pair_hashtag.tolist())}
    negs = [(int(r[0]), int(h)) for r in batch for h in r[3:]]
    share = sum(x in own for x in negs) / len(negs)
    assert 0.45 < share < 0.8, share          # half by design, plus uniform draws that happen to be the user's
    for r in batch:                           # never a hashtag of the post itself
        assert not sampler.on_video(r[1].repeat(4), r[3:]).any()
    uniform = sampling.TripleSampler(tiny_data, num_neg=4)
    batch = uniform.__getitems__(list(range(len(uniform))))
    assert sum((int(r[0]), int(h)) in own for r in batch for h in r[3:]) / len(negs) < share - 0.2


def test_calibrate_counts_keeps_the_best_scale_on_validation(tiny_dir, tmp_path, capsys):
    from data_load import load_dataset
    from evaluation import evaluate
    d = load_dataset(tiny_dir, verbose=False)
    best = train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '2', '--dim_latent',
                       '8', '--save_dir', str(tmp_path), '--run_name', 'cal', '--no_progress', '--calibrate_counts',
                       '--test_rows', str(tmp_path / 'rows.npz')])
    ckpt = torch.load(tmp_path / 'cal' / 'best.pt', weights_only=True)
    model, _ = checkpoint.load_checkpoint(str(tmp_path / 'cal' / 'best.pt'), d)
    w0 = ckpt['best']['count_weight_trained']
    assert best['count_scale'] in COUNT_SCALES
    assert abs(float(model.count_weight.detach()) - w0 * best['count_scale']) < 1e-6
    # the kept scale is the best of every scale on validation (R@10, then NDCG@10), and the checkpoint scores so
    keys = {}
    with torch.no_grad():
        for f in COUNT_SCALES:
            model.count_weight.fill_(w0 * f)
            keys[f] = selection_key(evaluate(model, d.val, (5, 10)))
        model.count_weight.fill_(w0 * best['count_scale'])
        assert evaluate(model, d.test, (5, 10))['recall@10'] == best['test']['recall@10']
    assert keys[best['count_scale']] == max(keys.values())
    # the calibration scores every factor from one pass (score_parts): the same metrics, exactly, as scoring the
    # model with w set to each factor
    with torch.no_grad():
        model.count_weight.fill_(w0)
    _, _, table = hooks.calibrate_count_weight(model, d.val, (5, 10))
    with torch.no_grad():
        for f, m in table:
            model.count_weight.fill_(w0 * f)
            assert m == evaluate(model, d.val, (5, 10))
        model.count_weight.fill_(w0 * best['count_scale'])
    import numpy as np
    rows = np.load(tmp_path / 'rows.npz')                     # the per-row test metrics are the calibrated model's
    assert abs(float(rows['recall@10'].mean()) - best['test']['recall@10']) < 1e-5
    # calibrating the calibrated checkpoint again starts from the trained weight: the same result
    splits = {'val': d.val, 'test': d.test}
    again, _ = train.finish_run(hooks.CountCalibration(), str(tmp_path / 'cal' / 'best.pt'), str(tmp_path / 'cal'), d,
                                splits, (5, 10), None, 'cpu', 'recall@10', best['epochs_run'])
    assert (again['count_scale'], again['count_weight'], again['test']) == \
        (best['count_scale'], best['count_weight'], best['test'])
    # where validation cannot tell the factors apart, w stays as trained
    flat = {'recall@10': 0.5, 'ndcg@10': 0.5}
    orig = hooks.evaluate_variants
    try:
        hooks.evaluate_variants = lambda model, split, variants, n, *a, **kw: [flat] * n
        assert hooks.calibrate_count_weight(model, d.val, (5, 10))[0] == 1.0
    finally:
        hooks.evaluate_variants = orig
    # only GCN_PHR_plus has a count term to calibrate
    try:
        train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR', '--calibrate_counts', '--num_epoch', '1'])
        raise AssertionError('expected an error')
    except SystemExit as e:
        assert 'GCN_PHR does not take --calibrate_counts' in str(e)


def test_select_calibrated_selects_on_the_calibrated_validation_and_leaves_training_alone(tiny_dir, tiny_data, tmp_path):
    import json
    common = ['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '3', '--patience', '0',
              '--dim_latent', '8', '--save_dir', str(tmp_path), '--no_progress']
    best = train.main(common + ['--run_name', 'sel', '--select_calibrated'])
    train.main(common + ['--run_name', 'plain'])
    lines = [json.loads(x) for x in open(tmp_path / 'sel' / 'metrics.jsonl')]
    plain = [json.loads(x) for x in open(tmp_path / 'plain' / 'metrics.jsonl')]
    # training never sees the factor: the same losses epoch by epoch as a run without the flag
    assert [x['loss'] for x in lines] == [x['loss'] for x in plain]
    # every epoch is measured at the factor fitted on its validation, never below the learned weight's validation
    assert all(x['count_scale'] in COUNT_SCALES for x in lines)
    assert all(selection_key(x['val']) >= selection_key(y['val']) for x, y in zip(lines, plain))
    # the selected epoch is the best calibrated one, and the kept model is that epoch's at its factor
    top = max(lines, key=lambda x: (selection_key(x['val']), -x['epoch']))
    assert best['epoch'] == top['epoch'] and best['count_scale'] == top['count_scale']
    assert best['val']['recall@10'] == top['val']['recall@10'] and best['test'] == top['test']
    ckpt = torch.load(tmp_path / 'sel' / 'best.pt', weights_only=True)
    assert checkpoint.load_checkpoint(str(tmp_path / 'sel' / 'best.pt'), tiny_data)[0].calibrate_counts  # implied
    assert ckpt['best']['count_weight_trained'] is not None
    assert abs(ckpt['best']['count_weight'] - ckpt['best']['count_weight_trained'] * top['count_scale']) < 1e-6


def test_content_net_and_count_gate_options(tiny_data, tiny_dir, tmp_path):
    # tried on validation and not adopted (README, "What was tried"): off by default, each changes the output
    base = build(tiny_data)
    gated = build(tiny_data, count_gate='post')
    # the gate starts at exactly 1 (zero weights): the same scores as without it until it learns
    assert torch.allclose(scores(gated, tiny_data), scores(base, tiny_data), atol=1e-6)
    outs = {}
    for kw in (dict(), dict(content_net='mlp'), dict(count_gate='post'), dict(count_gate='pair')):
        m = build(tiny_data, **kw)
        before = {k: v.detach().clone() for k, v in m.named_parameters()}
        train_steps(m, tiny_data, steps=2)
        for k, v in m.named_parameters():            # every parameter of each option learns
            assert not torch.equal(before[k], v.detach()), (kw, k)
        outs[tuple(kw.items())] = scores(m, tiny_data)
    for a, b in itertools.combinations(outs, 2):
        assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)
    # the gate multiplies the count term only: no counts, no gate
    assert build(tiny_data, counts=False, count_gate='pair').count_gate == 'none'
    for bad in (dict(content_net='cnn'), dict(count_gate='yes')):
        try:
            build(tiny_data, **bad)
        except ValueError as e:
            assert repr(next(iter(bad.values()))) in str(e)
        else:
            raise AssertionError(bad)
    # through train.py, and a checkpoint that serves a new post (a feature row) as it serves the dataset's post
    train.main(['--data_path', tiny_dir, '--model_name', 'GCN_PHR_plus', '--num_epoch', '1', '--dim_latent', '8',
                '--content_net', 'mlp', '--count_gate', 'pair', '--save_dir', str(tmp_path), '--run_name', 'opt',
                '--no_progress'])
    model, ckpt = checkpoint.load_checkpoint(str(tmp_path / 'opt' / 'best.pt'), tiny_data)
    assert ckpt['model_args']['content_net'] == 'mlp' and ckpt['model_args']['count_gate'] == 'pair'
    t = tiny_data.test
    with torch.no_grad():
        enc = model.encode()
        by_id = model.score(enc, t.users, P(ids=t.videos), t.candidates)
        by_row = model.score(enc, t.users, P(features=tiny_data.features[t.videos]), t.candidates)
    assert torch.allclose(by_id, by_row, atol=1e-5)


def test_full_ranking_count_term_added_sparsely_equals_the_dense_table(tiny_data):
    """Under full ranking (``score_all``) GCN-PHR+ adds log(1 + c_uh) only where a count is stored: the scores equal
    the dense a + w * log_count exactly, on validation rows and on training posts (their own hashtags left out)."""
    from phr.core.sparse import lookup_pairs
    torch.manual_seed(0)
    m = build_model('GCN_PHR_plus', tiny_data, dim=8).eval()
    m.count_weight.data.fill_(1.7)
    H = tiny_data.num_hashtag
    with torch.no_grad():
        enc = m.encode()
        for users, videos in ((tiny_data.val.users, tiny_data.val.videos),
                              (tiny_data.train[:20, 0], tiny_data.train[:20, 1])):
            every = torch.arange(H).expand(len(users), H)
            s, log_count = m.score_parts(enc, users, P(ids=videos), None)
            count = lookup_pairs(m.count_keys, m.counts_uh, users, every, H)
            own = torch.ones(()).expand(len(m.train_vh_keys))
            count = count - lookup_pairs(m.train_vh_keys, own, videos, every, H)
            assert torch.equal(log_count, torch.log1p(count))
            assert bool((log_count != 0).any())
            assert torch.equal(m.score_all(enc, users, P(ids=videos)), s + m.count_weight * log_count)


def test_full_ranking_fused_terms_equal_the_per_candidate_path(tiny_data):
    """Under full ranking without gradients (``score_all``) GCN-PHR+ writes its identity and content terms as one
    matmul that the scorer adds into: the same scores (up to float rounding) as scoring the same hashtags given as
    candidates in another order, on validation rows and on training posts, every switch on and with identity or
    content off."""
    H = tiny_data.num_hashtag
    for switches in ({}, {'identity': False}, {'content': False}):
        torch.manual_seed(0)
        m = build_model('GCN_PHR_plus', tiny_data, dim=8, **switches).eval()
        with torch.no_grad():
            for p in m.parameters():   # no term left at its zero initialisation
                p.add_(0.1 * torch.randn_like(p))
            enc = m.encode()
            perm = torch.randperm(H)
            for users, videos in ((tiny_data.val.users, tiny_data.val.videos),
                                  (tiny_data.train[:20, 0], tiny_data.train[:20, 1])):
                fused = m.score_all(enc, users, P(ids=videos))
                generic = torch.empty_like(fused)
                generic[:, perm] = m.score(enc, users, P(ids=videos), perm.expand(len(users), H))
                assert torch.allclose(fused, generic, atol=1e-5), switches
