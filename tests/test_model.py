import itertools

import pytest
import torch

from phr.core.base import Posts as P
import torch.nn.functional as F

from model import AGGR, SCORING_MODES, AggregationNet, GraphModel, make_graph_index
from phr.models.registry import MODELS, build_model

MODEL_NAMES = [n for n, spec in MODELS.items() if issubclass(spec.cls, GraphModel)]
from phr.training.losses import LOSSES
from phr.training.sampling import TripleSampler
from train import train_epoch


def train_steps(model, data, steps=25, lr=0.01, seed=0):
    """``steps`` calls of train.py's own ``train_epoch`` over one fixed full batch; the loss per triple of each."""
    torch.manual_seed(seed)
    sampler = TripleSampler(data)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batch = sampler.__getitems__(list(range(len(sampler))))   # one fixed full batch
    return [train_epoch(model, [batch], opt, LOSSES['bpr'], sampler, progress=False) for _ in range(steps)]


def eval_scores(model, data):
    model.eval()
    with torch.no_grad():
        return model.score(model.encode(), data.val.users, P(ids=data.val.videos), data.val.candidates)


CONFIGS = [('GCN_PHR', a, s) for a, s in itertools.product(AGGR, SCORING_MODES)] + \
          [(m, 'mean', 'cat') for m in MODEL_NAMES if m != 'GCN_PHR']


@pytest.fixture(scope='module')
def trained(tiny_data):
    out = {}
    for name, aggr, scoring in CONFIGS:
        torch.manual_seed(0)
        model = build_model(name, tiny_data, dim=16, num_layers=2, aggr=aggr, scoring_mode=scoring)
        losses = train_steps(model, tiny_data)
        out[(name, aggr, scoring)] = (losses, eval_scores(model, tiny_data))
    return out


@pytest.mark.parametrize('config', CONFIGS, ids=['-'.join(c) for c in CONFIGS])
def test_loss_falls(trained, config):
    losses, scores = trained[config]
    assert losses[-1] < 0.7 * losses[0], losses
    assert torch.isfinite(scores).all()


def test_configurations_differ(trained):
    outs = list(trained.items())
    for (c1, (_, s1)), (c2, (_, s2)) in itertools.combinations(outs, 2):
        assert not torch.allclose(s1, s2, atol=1e-4), (c1, c2)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_every_learnable_is_a_parameter_and_moves(tiny_data, name):
    torch.manual_seed(0)
    model = build_model(name, tiny_data, dim=32)
    params = dict(model.named_parameters())
    # every floating tensor the model holds is either a parameter or a non-persistent data buffer
    assert set(model.state_dict()) == set(params), set(model.state_dict()) ^ set(params)
    assert 'user_emb.weight' in params and 'hashtag_emb.weight' in params
    before = {k: v.detach().clone() for k, v in params.items()}
    train_steps(model, tiny_data, steps=1, lr=0.01)
    for k, v in params.items():
        assert not torch.equal(before[k], v.detach()), f'{k} did not change after one step'


def reference_layer(layer, x_user, x_hashtag, x_video, data):
    """Straightforward per-user / per-hashtag loops over the training triples (the figure, read literally)."""
    g = data.graph
    triples = list(zip(g.triple_user.tolist(), g.triple_video.tolist(), g.triple_hashtag.tolist()))
    groups = {}
    for u, v, h in triples:
        groups.setdefault((u, h), []).append(v)
    red = {'mean': lambda t: t.mean(0), 'sum': lambda t: t.sum(0), 'max': lambda t: t.max(0).values}[layer.aggr]

    def attend(head, videos, cond):
        """head 0: the user side, conditioned on the hashtag; head 1: the hashtag side, conditioned on the user."""
        xv = x_video[videos]
        if not layer.attention:
            return xv.mean(0)
        att, d = layer.att, x_video.size(1)
        w_video = att.lin_video.weight[head * d:(head + 1) * d]
        e = F.leaky_relu(xv @ w_video.T + att.lin_cond[head](cond), 0.2) @ att.att[head]
        return (torch.softmax(e, 0).unsqueeze(-1) * xv).sum(0)

    new_u, new_h = [], []
    for u in range(data.num_user):
        hs = sorted(h for (uu, h) in groups if uu == u)
        if hs:
            tag_msg = red(torch.stack([x_hashtag[h] for h in hs]))
            vid_msg = red(torch.stack([attend(0, groups[(u, h)],
                                              x_hashtag[h]) for h in hs]))
            m = tag_msg + vid_msg
        else:
            m = torch.zeros_like(x_user[u])
        new_u.append(F.leaky_relu(layer.lin_user(m) + layer.self_user(x_user[u])))
    for h in range(data.num_hashtag):
        us = sorted(u for (u, hh) in groups if hh == h)
        if us:
            m = red(torch.stack([x_user[u] for u in us])) + red(torch.stack([
                attend(1, groups[(u, h)], x_user[u]) for u in us]))
        else:
            m = torch.zeros_like(x_hashtag[h])
        new_h.append(F.leaky_relu(layer.lin_hashtag(m) + layer.self_hashtag(x_hashtag[h])))
    return torch.stack(new_u), torch.stack(new_h)


@pytest.mark.parametrize('aggr', list(AGGR))
@pytest.mark.parametrize('attention', [True, False])
def test_aggregation_layer_matches_reference_loop(tiny_data, aggr, attention):
    torch.manual_seed(1)
    d = 8
    layer = AggregationNet(d, aggr, attention)
    x_user = torch.randn(tiny_data.num_user, d)
    x_hashtag = torch.randn(tiny_data.num_hashtag, d)
    x_video = torch.randn(tiny_data.num_video, d)
    fast = layer(x_user, x_hashtag, x_video, make_graph_index(tiny_data.graph))
    with torch.no_grad():
        ref = reference_layer(layer, x_user, x_hashtag, x_video, tiny_data)
    assert torch.allclose(fast[0], ref[0], atol=1e-5)
    assert torch.allclose(fast[1], ref[1], atol=1e-5)


def test_unknown_options_are_refused(tiny_data):
    with pytest.raises(ValueError, match='aggr_mode'):
        build_model('GCN_PHR', tiny_data, aggr='median')
    with pytest.raises(ValueError, match='scoring_mode'):
        build_model('GCN_PHR', tiny_data, scoring_mode='dot')
    with pytest.raises(ValueError, match='model_name'):
        build_model('GCN', tiny_data)


@pytest.mark.parametrize('mode', SCORING_MODES)
def test_scorer_matches_plain_two_towers(mode):
    """Fast scorer (split first layer, folded last layer) == FC1([u; v]) . FC2([u; h]) computed literally."""
    from model import Scorer
    torch.manual_seed(0)
    d, B, C = 8, 5, 7
    sc = Scorer(d, mode)
    u, v, table = torch.randn(B, d), torch.randn(B, d), torch.randn(11, d)
    idx = torch.randint(11, (B, C))
    fast = sc(u, v, sc.prepare(table), idx)
    h = table[idx]
    uv = F.leaky_relu(sc.video_in(torch.cat([u, v], -1)))
    w_h = torch.cat([sc.hashtag_user.weight, sc.hashtag_tag.weight], 1)             # Linear on [u; h]
    uh = F.leaky_relu(torch.cat([u.unsqueeze(1).expand(B, C, d), h], -1) @ w_h.T + sc.hashtag_user.bias)
    if mode == 'cat':
        uv, uh = sc.video_out(uv), sc.hashtag_out(uh)
    ref = (uh * uv.unsqueeze(1)).sum(-1)
    assert torch.allclose(fast, ref, atol=1e-5)
    # the evaluation path (no grad: blocks of rows in a reused workspace) gives the same scores, for any block size
    for block_elements in (C * d, 2 * C * d, 10 ** 6):
        sc.EVAL_BLOCK_ELEMENTS = block_elements
        with torch.no_grad():
            assert torch.allclose(sc(u, v, sc.prepare(table), idx), ref, atol=1e-5)


@pytest.mark.parametrize('aggr', list(AGGR))
@pytest.mark.parametrize('attention', [True, False])
def test_model_propagation_and_gradients_match_reference(tiny_data, aggr, attention):
    """The whole fast propagation (graph-local video numbering, video parts shared by the layers, one two-head
    attention pass, in-place ops) == the literal per-node loops stacked, in values and in every gradient."""
    from model import GCNPHR
    torch.manual_seed(2)
    model = GCNPHR(tiny_data, dim=8, num_layers=2, aggr=aggr, scoring_mode='cat', attention=attention)
    w_user, w_hashtag = torch.randn(tiny_data.num_user, 8), torch.randn(tiny_data.num_hashtag, 8)

    def run(fn):
        model.zero_grad()
        x_user, x_hashtag = fn()
        ((x_user * w_user).sum() + (x_hashtag * w_hashtag).sum()).backward()
        return x_user.detach(), x_hashtag.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                                                     if p.grad is not None}

    def fast():
        enc = model.encode()
        return enc['user'], enc['hashtag']

    def reference():
        x_user, x_hashtag = model.user_emb.weight, model.hashtag_emb.weight
        x_video = model.project(model.features)   # every video, by its dataset id
        for layer in model.layers:
            x_user, x_hashtag = reference_layer(layer, x_user, x_hashtag, x_video, tiny_data)
        return x_user, x_hashtag

    u1, h1, g1 = run(fast)
    u2, h2, g2 = run(reference)
    assert torch.allclose(u1, u2, atol=1e-5) and torch.allclose(h1, h2, atol=1e-5)
    assert set(g1) == set(g2) and ('layers.0.att.att' in g1) == attention
    for k in g2:
        assert torch.allclose(g1[k], g2[k], atol=1e-5), k
