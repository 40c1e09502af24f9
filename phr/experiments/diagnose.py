"""Look inside a trained checkpoint: what its vectors keep, and what its score adds to counting.

    python scripts/diagnose.py runs/GCN_PHR/best.pt --data_path Data/demo
    python scripts/diagnose.py runs/tune/howyoutag/GCN_PHR/seed_0_s0/best.pt --data_path Data/howyoutag

Prints:
  * effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli 2007) and rms of the id
    embeddings and of the propagated user / hashtag vectors that reach the scorer (graph models);
  * per aggregation layer (GCN-PHR and its variants), the mean norm of the neighbour part W m and of the self part
    W_self x, for users and hashtags;
  * where hashtag names carry groups (the generator's ``#t<topic>_c<concept>_<k>``), the mean cosine of propagated
    hashtag vectors within a concept, across concepts of one topic, and across topics;
  * Recall@10 / NDCG@10 on validation and test of the user's own hashtag frequency, of the model, and of the two
    together: the user's count first, its ties (mostly hashtags the user never used) broken by the model's score.
    What the model adds to counting is the last minus the first.
  * for GCN_PHR_plus with its count term, validation Recall@10 / NDCG@10 with the learned count weight w scaled
    by each of ``--count_scales`` (validation only: whether the model under- or over-weights counts).
"""
import argparse
import os
import re


import torch

from data_load import DataError, load_dataset
from evaluation import evaluate
from phr.training.checkpoint import CheckpointError, load_checkpoint
from model import GraphModel
from phr.core.base import Recommender
from phr.models.registry import build_model
from phr import ROOT

GROUP_RE = re.compile(r'^#?t(\d+)_c(\d+)_\d+$')


def effective_rank(x):
    """exp(entropy of the singular values normalised to sum 1): 1 for rank one, d for a well-spread [n, d]."""
    s = torch.linalg.svdvals(x.double() - x.double().mean(0))
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def rms(x):
    return float(x.pow(2).mean().sqrt())


def layer_norms(model):
    """{layer: {'user': (neighbour, self), 'hashtag': (neighbour, self)}} mean row norms, by forward hooks."""
    out, hooks = {}, []
    layers = getattr(model, 'layers', None)
    if layers is None:
        return out
    for i, layer in enumerate(layers):
        for side in ('user', 'hashtag'):
            for part, mod in (('neighbour', getattr(layer, f'lin_{side}')), ('self', getattr(layer, f'self_{side}'))):
                def hook(m, inp, o, i=i, side=side, part=part):
                    out.setdefault(i, {}).setdefault(side, {})[part] = float(o.norm(dim=1).mean())
                hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model.encode()
    for h in hooks:
        h.remove()
    return out


def group_cosines(vectors, names):
    """Mean cosine of hashtag vectors: same concept, same topic (other concept), other topic; None without groups."""
    groups = [GROUP_RE.match(n) for n in names]
    if not all(groups):
        return None
    topic = torch.tensor([int(g.group(1)) for g in groups])
    concept = torch.tensor([int(g.group(2)) for g in groups])
    x = torch.nn.functional.normalize(vectors.double(), dim=1)
    gen = torch.Generator().manual_seed(0)
    n = len(names)
    i, j = torch.randint(n, (200_000,), generator=gen), torch.randint(n, (200_000,), generator=gen)
    keep = i != j
    i, j = i[keep], j[keep]
    cos = (x[i] * x[j]).sum(1)
    same_c = concept[i] == concept[j]
    same_t = (topic[i] == topic[j]) & ~same_c
    other = topic[i] != topic[j]
    mean = lambda mask: float(cos[mask].mean()) if mask.any() else float('nan')
    return mean(same_c), mean(same_t), mean(other)


class CountThenModel(Recommender):
    """The user's training count first, ties broken by the model's score (squashed into (0, 1))."""
    trainable = False

    def __init__(self, counts, model):
        super().__init__()
        self.counts, self.model = counts, model
        self.num_hashtag = model.num_hashtag

    def encode(self):
        return self.model.encode()

    def score(self, enc, users, posts, hashtags):
        return self.counts.score(None, users, posts, hashtags).floor() + torch.sigmoid(
            self.model.score(enc, users, posts, hashtags))

    def score_all(self, enc, users, posts):
        return self.counts.score_all(None, users, posts).floor() + torch.sigmoid(self.model.score_all(enc, users, posts))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint')
    p.add_argument('--data_path', required=True)
    p.add_argument('--device', default='cpu')
    p.add_argument('--count_scales', type=float, nargs='+', default=[1, 1.5, 2, 3, 5],
                   help='GCN_PHR_plus: factors of its learned count weight to evaluate on validation')
    return p


def run(args):
    if any(not (0 <= k < float('inf')) for k in args.count_scales):
        build_parser().error('--count_scales: every factor must be a finite number >= 0')
    try:
        data = load_dataset(args.data_path, verbose=False)
        model, ckpt = load_checkpoint(args.checkpoint, data, args.device)
    except (DataError, CheckpointError) as e:
        raise SystemExit(f'error: {e}')
    name = ckpt.get("model_name") or ckpt.get("config", {}).get("model_name")
    print(f'{args.checkpoint}: {name} {ckpt.get("model_args", "")}, epoch {ckpt.get("epoch")}, '
          f'weight decay {ckpt.get("config", {}).get("weight_decay")}, decay on embeddings: '
          f'{ckpt.get("config", {}).get("decay_embeddings", "yes (before the flag existed)")}')
    with torch.no_grad():
        enc = model.encode()
    if isinstance(model, GraphModel):
        d = model.dim
        print(f'\nvector                 eff. rank (of {d})   rms')
        rows = [('user id embedding', model.user_emb.weight), ('hashtag id embedding', model.hashtag_emb.weight),
                ('propagated user', enc['user']), ('propagated hashtag', enc['hashtag'])]
        for name, x in rows:
            print(f'{name:<22s} {effective_rank(x.detach()):10.1f}        {rms(x.detach()):.4f}')
        norms = layer_norms(model)
        if norms:
            print('\nlayer  side      ||W m|| (neighbours)  ||W_self x|| (self)')
            for i, sides in norms.items():
                for side, v in sides.items():
                    print(f'{i:5d}  {side:<8s}  {v["neighbour"]:18.3f}  {v["self"]:18.3f}')
        cos = group_cosines(enc['hashtag'], data.hashtag_names)
        if cos:
            print(f'\npropagated hashtag vectors, mean cosine: same concept {cos[0]:.3f}, other concept of the same '
                  f'topic {cos[1]:.3f}, other topic {cos[2]:.3f}')
    counts = build_model('user_popularity', data).to(args.device)
    both = CountThenModel(counts, model)
    print('\nranker                               val R@10  val NDCG@10  test R@10  test NDCG@10')
    for name, m in (("user's own frequency", counts), ('this model', model), ('count first, model breaks ties', both)):
        r = {s: evaluate(m, getattr(data, s).to(args.device), (10,)) for s in ('val', 'test')}
        print(f'{name:<36s} {r["val"]["recall@10"]:8.4f}  {r["val"]["ndcg@10"]:11.4f}  {r["test"]["recall@10"]:9.4f}'
              f'  {r["test"]["ndcg@10"]:12.4f}')
    if hasattr(model, 'count_weight'):   # GCN_PHR_plus with its count term
        w = model.count_weight.detach().clone()
        val = data.val.to(args.device)
        print(f'\ncount weight w = {w.item():.3f} (learned), scaled on validation:\n'
              f'scale   val R@10  val NDCG@10')
        with torch.no_grad():
            for k in args.count_scales:
                model.count_weight.copy_(w * k)
                r = evaluate(model, val, (10,), enc=enc)
                print(f'{k:5g}   {r["recall@10"]:8.4f}  {r["ndcg@10"]:11.4f}')
            model.count_weight.copy_(w)
