"""GCN-PHR+ (**not the paper's model**): GCN-PHR plus what a trained GCN-PHR loses, and the count-weight calibration
that only this model has (docs/extension.md tells its story; the README says which numbers come from it).

The calibration is a hook of the model that train.py calls when a model has it: ``epoch_metrics`` (each epoch,
instead of plain evaluation: ``--select_calibrated``) and ``finish_run`` (once, on the best checkpoint:
``--calibrate_counts``). The loop knows neither the count weight nor the factors.
"""
import math

import torch
from torch import nn

from evaluation import evaluate_splits, evaluate_variants, selection_key
from model import AGGREGATION, DIM, GRAPH_SEARCH, LAYERS, SCORING, GCNPHR
from phr.models.baselines import TEXTS, NeighbourVotes, content_rows
from phr.models.base import HParam, is_every_hashtag, lookup_pairs, pair_entries, user_hashtag_counts

# factors of the learned count weight tried on validation by --calibrate_counts (1 keeps it as trained)
COUNT_SCALES = (0.5, 1, 1.5, 2, 3, 5, 8)


def calibrate_count_weight(model, val, ks, batch_size=None, scales=COUNT_SCALES, k=10, shard=None, enc=None):
    """Scale GCN_PHR_plus's learned count weight w by the factor of ``scales`` whose validation metrics are best
    (``selection_key``: Recall@k, then NDCG@k; on an exact tie the factor nearest 1, so w moves only where
    validation says so) and leave it scaled in ``model``.
    w is one scalar under Adam, which moves it about one learning rate per step, so from where it starts it moves
    little in the few hundred steps a run has; its scale is fitted here afterwards, on validation only, as the
    epoch is. Returns (factor, w before, [(factor, val metrics), ...]); (1.0, None, []) without a count term.
    ``shard``: rows shared out over data-parallel processes (``evaluate``); ``enc``: a propagation to reuse."""
    w = getattr(model, 'count_weight', None)
    if w is None:
        return 1.0, None, []
    model.eval()
    with torch.no_grad():
        if enc is None:
            enc = model.encode()            # the count term is added after propagation: one encode serves all
        w0 = w.detach().clone()
        variants = count_weight_variants(model, [w0 * f for f in scales])
        table = list(zip(map(float, scales), evaluate_variants(model, val, variants, len(scales), ks, batch_size,
                                                               enc=enc, shard=shard)))
        best = best_scale(table, k)
        w.copy_(w0 * best[0])
    return best[0], float(w0), table


def count_weight_variants(model, weights):
    """``variants`` for ``evaluation.evaluate_variants``: GCN_PHR_plus's score at each count weight of ``weights``,
    the rest of the score computed once and each weight's count term added to it (``GCNPHRPlus.score_parts``)."""
    def variants(enc, users, videos, hashtags):
        s, log_count = model.score_parts(enc, users, videos, hashtags)
        return [s + wf * log_count for wf in weights]
    return variants


def best_scale(table, k=10):
    """The (factor, metrics) of ``table`` that count-weight calibration keeps: best ``selection_key``, then the
    factor nearest 1 (w moves only where validation says so), then the smaller one."""
    return max(table, key=lambda t: (selection_key(t[1], k), -abs(math.log(t[0])), -t[0]))


CONTENT_NETS = ('linear', 'mlp')
COUNT_GATES = ('none', 'post', 'pair')


class GCNPHRPlus(GCNPHR):
    r"""**Not the paper's model**: GCN-PHR plus what a trained GCN-PHR loses (docs/extension.md).

    .. math::
        s(u, v, h) = \underbrace{\langle FC_1([\bar x_u; p_v]), FC_2([\bar x_u; \bar x_h])\rangle}_{\text{GCN-PHR}}
        + \underbrace{b_h + \langle e_u, e_h\rangle}_{\text{identity}}
        + \underbrace{w \log(1 + c_{uh})}_{\text{counts}}
        + \underbrace{\langle W_c p_v, q_h\rangle}_{\text{content}}

    - ``identity``: the node vectors that reach the scorer are the mean of every layer's output *including the id
      embedding* (layer 0), as LightGCN combines its layers, so propagation cannot wash a node's identity out;
      plus a learned per-hashtag bias b_h and a direct user x hashtag id term <e_u, e_h>.
    - ``counts``: c_uh = how many training posts u tagged with h (training triples only), through a learned weight w
      (initialised at ``count_weight``: a scalar under Adam moves about one learning rate per step, so where it
      starts matters; the tuning grid tries 1 and 5). The mean over distinct (user, hashtag) pairs in the
      aggregation cannot carry the count. For a training post the count leaves that post out (leave-one-out:
      c_uh - 1 for its own hashtags), so in training as at test time it says how often the user chose h on
      *other* posts; otherwise "count >= 1" would mark every training positive and teach nothing about held-out
      posts.
    - ``content``: a direct post x hashtag term, W_c p_v against a separate hashtag table q, so a hashtag the user
      never used, and a new post, are ranked by what the post says.
    Each switch off removes its term; all off gives GCN-PHR's score exactly.
    """

    hparams = (DIM, LAYERS, AGGREGATION, SCORING,
               HParam('identity', True, 'layer-0 ids in the layer mean, hashtag bias, user x hashtag id term'),
               HParam('counts', True, "the user's training count of the hashtag, log(1 + c), in the score"),
               HParam('content', True, 'a direct post x hashtag content term'),
               HParam('count_weight', 1.0, 'initial weight w of the count term w log(1 + c) (learned; it moves about '
                                           '--l_r per step)'),
               HParam('content_net', 'linear', "the content term's post vector: linear (a linear map of p_v, the "
                                               "projection GCN-PHR's scorer reads) | mlp (its own 2-layer MLP on the "
                                               "post's features, as ConTagNet's content branch)",
                      choices=CONTENT_NETS),
               HParam('count_gate', 'none', 'a factor 2 sigmoid(logit) on the count term, 1 at the start: none | '
                                            'post: logit = a . p_v + <G p_v, e_u> + b | pair: also + <K p_v, k_h>',
                      choices=COUNT_GATES),
               HParam('calibrate_counts', False, 'after training, scale the learned count weight w of the best '
                                                 f'checkpoint by the factor of {list(COUNT_SCALES)} best on validation '
                                                 'R@10 (ties: NDCG@10); best.pt keeps the scaled w'),
               HParam('select_calibrated', False, 'fit that factor on validation at every epoch too, and select the '
                                                  'epoch and stop early on the calibrated validation metrics '
                                                  '(training keeps the learned w); implies --calibrate_counts'))
    # the graph grid, the extension's own knobs, and its count weight scaled on validation in every configuration
    search = dict(GRAPH_SEARCH, loss=['bpr', 'sampled_softmax'], num_train_neg=[1, 8], count_weight=[1.0, 5.0],
                  calibrate_counts=[True], select_calibrated=[True])
    ablations = ('identity', 'counts', 'content')

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat', attention=True,
                 identity=True, counts=True, content=True, count_weight=1.0, content_net='linear', count_gate='none',
                 calibrate_counts=False, select_calibrated=False):
        super().__init__(data, dim, num_layers, aggr, scoring_mode, attention)
        self.select_calibrated = bool(select_calibrated)
        self.calibrate_counts = bool(calibrate_counts) or self.select_calibrated
        self.identity, self.counts, self.content = bool(identity), bool(counts), bool(content)
        if content_net not in CONTENT_NETS:
            raise ValueError(f'content_net {content_net!r}: choose from {CONTENT_NETS}')
        if count_gate not in COUNT_GATES:
            raise ValueError(f'count_gate {count_gate!r}: choose from {COUNT_GATES}')
        self.content_net, self.count_gate = content_net, (count_gate if self.counts else 'none')
        if self.identity:
            self.hashtag_bias = nn.Parameter(torch.zeros(self.num_hashtag))
        if self.counts:
            keys, counts = user_hashtag_counts(data.graph, self.num_hashtag)   # sorted (user, hashtag) keys
            self.register_buffer('count_keys', keys, persistent=False)
            self.register_buffer('counts_uh', counts, persistent=False)
            # (video, hashtag) keys of the training triples: the posts whose own use is left out of c_uh
            self.register_buffer('train_vh_keys', torch.unique(data.train[:, 1] * self.num_hashtag + data.train[:, 2]),
                                 persistent=False)
            self.count_weight = nn.Parameter(torch.full((), float(count_weight)))
        if self.content:
            if content_net == 'mlp':   # its own 2-layer MLP on the post's features (ConTagNet's content branch)
                self.content_video = nn.Sequential(self.feature_linear(dim), nn.ReLU(), nn.Linear(dim, dim))
            else:                      # a linear map of p_v, the projection the GCN-PHR scorer reads too
                self.content_video = nn.Linear(dim, dim, bias=False)
            self.content_hashtag = nn.Embedding(self.num_hashtag, dim)
            nn.init.normal_(self.content_hashtag.weight, std=0.1)
        if self.count_gate != 'none':
            # a factor on the count term, 2 sigmoid(logit), 1 at the start (zero weights): per post, logit =
            # a . p_v + <G p_v, e_u> + b; per (post, hashtag) also + <K p_v, k_h>
            self.gate_video = nn.Linear(dim, 1)
            self.gate_user = nn.Linear(dim, dim, bias=False)
            for lin in (self.gate_video, self.gate_user):
                nn.init.zeros_(lin.weight)
            nn.init.zeros_(self.gate_video.bias)
            if self.count_gate == 'pair':
                self.gate_hashtag_map = nn.Linear(dim, dim, bias=False)
                nn.init.zeros_(self.gate_hashtag_map.weight)
                self.gate_hashtag = nn.Embedding(self.num_hashtag, dim)
                nn.init.normal_(self.gate_hashtag.weight, std=0.1)

    def propagate(self, x_user, x_hashtag, x_video):
        if not self.identity:
            return super().propagate(x_user, x_hashtag, x_video)
        sum_user, sum_hashtag = x_user, x_hashtag
        for x_user, x_hashtag in self.layer_outputs(x_user, x_hashtag, x_video):
            sum_user, sum_hashtag = sum_user + x_user, sum_hashtag + x_hashtag
        n = len(self.layers) + 1
        return sum_user / n, sum_hashtag / n

    def log_count(self, users, hashtags, videos=None):
        """log(1 + c_uh) for users [B] and hashtags [B, C]: [B, C] (0 for pairs never seen in training). With
        ``videos`` [B] ids, a training post's own hashtags are left out of its count (leave-one-out)."""
        if is_every_hashtag(hashtags, self.num_hashtag):
            row, col, value = self.log_count_entries(users, videos)
            out = torch.zeros(hashtags.shape, dtype=value.dtype, device=value.device)
            out[row, col] = value
            return out
        count = lookup_pairs(self.count_keys, self.counts_uh, users, hashtags, self.num_hashtag)
        if videos is not None and not videos.is_floating_point():
            own = torch.ones((), device=count.device).expand(len(self.train_vh_keys))
            count = count - lookup_pairs(self.train_vh_keys, own, videos, hashtags, self.num_hashtag)
        return torch.log1p(count)

    def log_count_entries(self, users, videos=None):
        """``log_count`` over every hashtag in sparse form: (row, hashtag, log(1 + c_uh)) of the pairs with a stored
        count (or a left-out own hashtag), each pair once; every other pair's value is log1p(0) = 0. The same values
        as the dense table (counts are small integers, so count - own is exact in either order)."""
        row, col, value = pair_entries(self.count_keys, self.counts_uh, users, self.num_hashtag)
        if videos is not None and not videos.is_floating_point():
            r2, c2, _ = pair_entries(self.train_vh_keys, self.train_vh_keys, videos, self.num_hashtag)
            key, inv = torch.unique(torch.cat([row * self.num_hashtag + col, r2 * self.num_hashtag + c2]),
                                    return_inverse=True)
            count = torch.zeros(len(key), dtype=value.dtype, device=value.device)
            count.index_add_(0, inv, torch.cat([value, -torch.ones(len(r2), dtype=value.dtype, device=value.device)]))
            row, col, value = key // self.num_hashtag, key % self.num_hashtag, count
        return row, col, torch.log1p(value)

    def score_parts(self, enc, users, videos, hashtags, count_term=True):
        """(every term but the count term, log(1 + c_uh) or None without ``counts`` or ``count_term``): score =
        a + w * b."""
        feats = self.video_features(videos)
        p_v = self.project(feats)
        if is_every_hashtag(hashtags, self.num_hashtag) and (self.identity or self.content):
            # full ranking: the identity and content terms as one [B, 2d] x [2d, H] matmul (+ b_h), no [B, H, d]
            # gather; without gradients the scorer's per-user matmul adds into it, so one [B, H] table is written
            left, right = [], []
            if self.identity:
                left.append(self.user_emb(users)); right.append(self.hashtag_emb.weight)
            if self.content:
                left.append(self.content_video(feats if self.content_net == 'mlp' else p_v))
                right.append(self.content_hashtag.weight)
            left, right = torch.cat(left, 1), torch.cat(right, 1)
            base = torch.addmm(self.hashtag_bias, left, right.T) if self.identity else left @ right.T
            s = self.scorer(enc['user'][users], p_v, enc['hashtag_part'], hashtags, base=base)
        else:
            s = self.scorer(enc['user'][users], p_v, enc['hashtag_part'], hashtags)
            if self.identity:
                e_u = self.user_emb(users)                                                     # [B, d]
                s = s + self.hashtag_bias[hashtags] + (self.hashtag_emb(hashtags) @ e_u.unsqueeze(-1)).squeeze(-1)
            if self.content:
                q = self.content_video(feats if self.content_net == 'mlp' else p_v)           # [B, d]
                s = s + (self.content_hashtag(hashtags) @ q.unsqueeze(-1)).squeeze(-1)
        if not (self.counts and count_term):
            return s, None
        log_count = self.log_count(users, hashtags, videos)
        if self.count_gate != 'none':
            logit = self.gate_video(p_v) + (self.gate_user(p_v) * self.user_emb(users)).sum(-1, keepdim=True)
            if self.count_gate == 'pair':                                          # [B, 1] -> [B, C]
                logit = logit + (self.gate_hashtag(hashtags) @ self.gate_hashtag_map(p_v).unsqueeze(-1)).squeeze(-1)
            log_count = log_count * (2 * torch.sigmoid(logit))
        return s, log_count

    def score(self, enc, users, videos, hashtags):
        if self.counts and self.count_gate == 'none' and not torch.is_grad_enabled() \
                and is_every_hashtag(hashtags, self.num_hashtag):
            # full ranking: the count term added where it is not 0 (a few entries a row), not as a dense table
            s = self.score_parts(enc, users, videos, hashtags, count_term=False)[0]
            row, col, value = self.log_count_entries(users, videos)
            s[row, col] = s[row, col] + self.count_weight * value
            return s
        s, log_count = self.score_parts(enc, users, videos, hashtags)
        # the count term last: calibrate_count_weight scores every factor of w from one score_parts call
        return s if log_count is None else s + self.count_weight * log_count

    # ---- the hooks train.py calls (the calibration of the count weight, on validation only)

    def epoch_metrics(self, splits, ks, batch_size=None, shard=None, k=10):
        """An epoch's {split: metrics} and what to log with them. With ``select_calibrated`` (and a count term) the
        count-weight factor is fitted on validation (``calibrate_count_weight``), validation and test are measured
        at it, then w goes back to its learned value: training never sees the factor, only which epoch is selected
        and when patience stops the run do."""
        if not (self.select_calibrated and self.counts):
            return evaluate_splits(self, splits, ks, batch_size, shard), {}
        self.eval()
        with torch.no_grad():
            enc = self.encode()
            factor, w0, table = calibrate_count_weight(self, splits['val'], ks, batch_size, k=k, shard=shard, enc=enc)
            m = {'val': dict(table)[factor], **evaluate_splits(self, {n: s for n, s in splits.items() if n != 'val'},
                                                               ks, batch_size, shard, enc)}
            self.count_weight.copy_(w0)
        return m, {'count_scale': factor}

    def finish_run(self, splits, ks, batch_size=None, k=10, trained=None):
        """``calibrate_counts`` after training, on the best checkpoint's model: its count weight (``trained``: the
        weight as trained, when the checkpoint was calibrated before) scaled by the factor best on validation.
        Returns None (nothing to do) or the calibration record: the scaled model's val/test metrics, the factor,
        the weights, and the validation metrics of every factor tried."""
        if not self.calibrate_counts:
            return None
        if not self.counts:
            print('--calibrate_counts: this model has no count term (--no-counts): nothing to calibrate')
            return None
        if trained is not None:
            with torch.no_grad():
                self.count_weight.fill_(trained)
        factor, w0, table = calibrate_count_weight(self, splits['val'], ks, batch_size, k=k)
        m = {'val': dict(table)[factor], **evaluate_splits(self, {'test': splits['test']}, ks, batch_size)}
        w = float(self.count_weight.detach())
        print(f'count weight w = {w0:.3f} as trained; on validation (R@{k} / NDCG@{k}): '
              + ', '.join(f'x{f:g} {t[f"recall@{k}"]:.4f} / {t[f"ndcg@{k}"]:.4f}' for f, t in table)
              + f'; kept x{factor:g} (w = {w:.3f})')
        return {'count_weight_trained': w0, 'count_scale': factor, 'count_weight': w,
                'val_by_scale': [{'scale': f, 'val': t} for f, t in table], 'val': m['val'], 'test': m['test']}


class GCNPHRKnn(GCNPHRPlus):
    r"""**Not the paper's model**: GCN-PHR+ with the similar-posts votes as a fifth term (docs/extension.md).

    .. math:: s(u, v, h) = s_{GCN-PHR+}(u, v, h) + w_v \, \mathrm{votes}(v, h)

    votes(v, h): the summed cosine similarity of the ``votes_k`` training posts most similar to v (its feature
    row) that carry h (``baselines.NeighbourVotes``, kNN's votes). For a training post its own row is left out of its
    neighbours (leave-one-out, as the count term leaves out its own use), so in training as at test time the term
    says what *other* posts like this one were tagged with. The votes are fixed data, computed once for every post
    of the dataset (a sparse (post, hashtag) table); a new post's are computed from its feature row. w_v is learned,
    starting at ``votes_weight``. With the GCN-PHR+ terms at zero the score is kNN's, mix * votes + log(1 + c),
    so the model starts from the similar-posts baseline and learns what to add.
    """
    hparams = GCNPHRPlus.hparams + (
        HParam('votes', True, "GCN-PHR+kNN: the similar posts' votes term (off: GCN-PHR+'s score)"),
        HParam('votes_k', 50, 'GCN-PHR+kNN: how many of the most similar training posts vote', positive=True),
        HParam('votes_weight', 1.0, 'GCN-PHR+kNN: initial weight w_v of the votes term (learned)'),
        HParam('votes_text', 'auto', 'GCN-PHR+kNN: what posts are compared by for the votes (as kNN --text)',
               choices=TEXTS))
    search = dict(l_r=[3e-3, 1e-2], weight_decay=[0.0, 1e-3], decay_embeddings=[False], num_layers=[1],
                  aggr_mode=['mean', 'add'], scoring_mode=['cat'], loss=['sampled_softmax'], num_train_neg=[8, 64],
                  count_weight=[1.0, 5.0], votes_weight=[1.0, 4.0], calibrate_counts=[True], select_calibrated=[True])
    ablations = ('identity', 'counts', 'content', 'votes')

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat', attention=True,
                 identity=True, counts=True, content=True, count_weight=1.0, content_net='linear', count_gate='none',
                 calibrate_counts=False, select_calibrated=False, votes=True, votes_k=50, votes_weight=1.0,
                 votes_text='auto'):
        super().__init__(data, dim, num_layers, aggr, scoring_mode, attention, identity, counts, content, count_weight,
                         content_net, count_gate, calibrate_counts, select_calibrated)
        self.votes = bool(votes)
        if not self.votes:
            return
        self.votes_text = content_rows(data, votes_text)
        self.reads_tfidf = self.votes_text == 'tfidf'   # a new post's votes need its TF-IDF row (new_posts_tfidf)
        self.vote_index = NeighbourVotes(data, self.features, votes_k,
                                         tfidf=data.text_tfidf if self.votes_text == 'tfidf' else None)
        uniq, values = self.vote_index.table(self.num_video, self.features if self.votes_text == 'dense' else None)
        self.register_buffer('vote_keys', uniq, persistent=False)
        self.register_buffer('vote_values', values, persistent=False)
        self.votes_weight = nn.Parameter(torch.full((), float(votes_weight)))

    def vote_term(self, videos, hashtags):
        """votes(v, h) for videos [B] ids or [B, F] feature rows and hashtags [B, C]: [B, C]."""
        if videos.is_floating_point():
            sims = self.vote_index.new_post_similarities(self, videos)
            return torch.gather(self.vote_index.votes(sims), 1, hashtags)
        return lookup_pairs(self.vote_keys, self.vote_values, videos, hashtags, self.num_hashtag)

    def score_parts(self, enc, users, videos, hashtags, count_term=True):
        s, log_count = super().score_parts(enc, users, videos, hashtags, count_term)
        if not self.votes:
            return s, log_count
        if not videos.is_floating_point() and not torch.is_grad_enabled() \
                and is_every_hashtag(hashtags, self.num_hashtag):
            # full ranking, evaluation: the votes added where they are stored (at most votes_k posts' hashtags a
            # row), into the fresh [B, H] table score_parts made; not a dense [B, H] lookup
            row, col, value = pair_entries(self.vote_keys, self.vote_values, videos, self.num_hashtag)
            s[row, col] += self.votes_weight * value
            return s, log_count
        return s + self.votes_weight * self.vote_term(videos, hashtags), log_count
