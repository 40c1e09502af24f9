"""GCN-PHR+ (**not the paper's model**): GCN-PHR plus what a trained GCN-PHR loses (docs/extension.md tells its story;
the README says which numbers come from it).

Its count weight is calibrated on validation by its own training hook, ``count_calibration``
(``phr/training/hooks.py``): each epoch with ``--select_calibrated``, once on the best checkpoint with
``--calibrate_counts``. The loop, the sweep and the reports know neither the count weight nor the factors.
"""
import torch
from torch import nn

from model import AGGREGATION, DIM, GRAPH_SEARCH, LAYERS, SCORING, GCNPHR
from phr.core.base import HParam
from phr.models.signals import post_hashtag_keys, user_hashtag_counts
from phr.core.sparse import lookup_pairs, lookup_rows, pair_entries

# factors of the learned count weight tried on validation by --calibrate_counts (1 keeps it as trained)
COUNT_SCALES = (0.5, 1, 1.5, 2, 3, 5, 8)


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
    count_scales = COUNT_SCALES       # the factors of w its calibration tries
    hook = 'count_calibration'        # phr/training/hooks.py: --calibrate_counts / --select_calibrated
    record_fields = {'count_scale': ('w x{:g}', '"w xF": the factor of its learned count weight that GCN-PHR+ kept on '
                                                'validation (--calibrate_counts).')}
    search_note = ('scales its count weight on validation at every epoch (select_calibrated), so its epochs are '
                   'selected and stopped on the calibrated validation.')

    def __init__(self, data, *, dim, num_layers, aggr, scoring_mode, identity, counts, content, count_weight, content_net,
                 count_gate, calibrate_counts, select_calibrated, attention=True):
        super().__init__(data, dim=dim, num_layers=num_layers, aggr=aggr, scoring_mode=scoring_mode, attention=attention)
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
            self.register_buffer('train_vh_keys', post_hashtag_keys(data), persistent=False)
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

    def log_count(self, users, hashtags, posts=None):
        """log(1 + c_uh) for users [B] and hashtags [B, C], or every hashtag (``hashtags`` None): [B, C] or [B, H] (0
        for pairs never seen in training). For dataset ``posts``, a training post's own hashtags are left out of its
        count (leave-one-out)."""
        if hashtags is None:
            row, col, value = self.log_count_entries(users, posts)
            out = torch.zeros(len(users), self.num_hashtag, dtype=value.dtype, device=value.device)
            out[row, col] = value
            return out
        count = lookup_pairs(self.count_keys, self.counts_uh, users, hashtags, self.num_hashtag)
        if posts is not None and not posts.is_new:
            own = torch.ones((), device=count.device).expand(len(self.train_vh_keys))
            count = count - lookup_pairs(self.train_vh_keys, own, posts.ids, hashtags, self.num_hashtag)
        return torch.log1p(count)

    def log_count_entries(self, users, posts=None):
        """``log_count`` over every hashtag in sparse form: (row, hashtag, log(1 + c_uh)) of the pairs with a stored
        count (or a left-out own hashtag), each pair once; every other pair's value is log1p(0) = 0. The same values
        as the dense table (counts are small integers, so count - own is exact in either order)."""
        row, col, value = pair_entries(self.count_keys, self.counts_uh, users, self.num_hashtag)
        if posts is not None and not posts.is_new:
            r2, c2, _ = pair_entries(self.train_vh_keys, self.train_vh_keys, posts.ids, self.num_hashtag)
            key, inv = torch.unique(torch.cat([row * self.num_hashtag + col, r2 * self.num_hashtag + c2]),
                                    return_inverse=True)
            count = torch.zeros(len(key), dtype=value.dtype, device=value.device)
            count.index_add_(0, inv, torch.cat([value, -torch.ones(len(r2), dtype=value.dtype, device=value.device)]))
            row, col, value = key // self.num_hashtag, key % self.num_hashtag, count
        return row, col, torch.log1p(value)

    def score_parts(self, enc, users, posts, hashtags, count_term=True):
        """(every term but the count term, log(1 + c_uh) or None without ``counts`` or ``count_term``): score =
        a + w * b, over candidates ``hashtags`` [B, C] or, ``hashtags`` None, every hashtag [B, H]."""
        feats = self.video_features(posts)
        p_v = self.project(feats)
        if hashtags is None and (self.identity or self.content):
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
            s = self.scorer(enc['user'][users], p_v, enc['hashtag_part'], None, base=base)
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
        log_count = self.log_count(users, hashtags, posts)
        if self.count_gate != 'none':
            logit = self.gate_video(p_v) + (self.gate_user(p_v) * self.user_emb(users)).sum(-1, keepdim=True)
            if self.count_gate == 'pair':                                          # [B, 1] -> [B, C]
                tags = hashtags if hashtags is not None else \
                    torch.arange(self.num_hashtag, device=users.device).expand(len(users), self.num_hashtag)
                logit = logit + (self.gate_hashtag(tags) @ self.gate_hashtag_map(p_v).unsqueeze(-1)).squeeze(-1)
            log_count = log_count * (2 * torch.sigmoid(logit))
        return s, log_count

    def score(self, enc, users, posts, hashtags):
        s, log_count = self.score_parts(enc, users, posts, hashtags)
        # the count term last: the calibration hook scores every factor of w from one score_parts call
        return s if log_count is None else s + self.count_weight * log_count

    def score_all(self, enc, users, posts):
        if self.counts and self.count_gate == 'none' and not torch.is_grad_enabled():
            # evaluation: the count term added where it is not 0 (a few entries a row), not as a dense table
            s = self.score_parts(enc, users, posts, None, count_term=False)[0]
            row, col, value = self.log_count_entries(users, posts)
            s[row, col] = s[row, col] + self.count_weight * value
            return s
        return self.score(enc, users, posts, None)
