"""TagRank (**not the paper's model**, and not a graph model): learning to rank over the classic evidence
(docs/extension.md). Candidates per post come cheaply from TagBlend's terms; a LambdaMART ranker (LightGBM's
``lambdarank``) orders them by features of each (post, candidate) pair, so the evidence may interact nonlinearly (a
vote means more for a user with few posts, a count more for a rare hashtag).

- **Candidates** of a post: the ``candidates`` best by TagBlend's score, the ``candidates // 4`` best by each of its
  terms, and every hashtag the user used in training (a union: its size varies by post).
- **Features** of a pair: every TagBlend term (counts, word votes, character n-gram votes, own posts, peers,
  centroid, popularity), the blend, log ranks of the pair within the post by each of them, the blend's margin to the
  post's best, the user's activity (training posts, distinct hashtags), the hashtag's (uses, distinct users), and,
  with ``score_checkpoint``, the score and log rank of another trained model of the suite (GCN-PHR, ConTagNet, ...).
- **Where it learns from**: held-out posts, cross-fitted as stacking is. The validation posts are split into ``folds``
  folds; each fold's ranker is fitted on the other folds (early stopping on an eighth of those posts) and scores its
  own fold, so every validation metric the sweep selects on is out-of-fold; test posts, training posts and new posts
  are scored by the mean of the fold rankers. Test labels are never read. (Fitting on leave-one-out training posts
  was measured in #41's probe: +0.007 R@10 over the blend on the makers' split, below it on another dataset; and a
  model score as a feature would be in-sample on training posts.)
- **Scores**: a candidate's score is its ranker output, placed above every non-candidate; non-candidates keep
  TagBlend's order below them.
No gradient training: built (fitted) once, like TagBlend and kNN; deterministic (LightGBM ``deterministic``, no
bagging), so the sweep runs it once per configuration.
"""
import threading

import numpy as np
import torch

from phr.core.base import HParam, Posts, Recommender
from phr.models.blend import TagBlend
from phr.models.signals import TEXT

EARLY_STOP = 30
# fewest validation posts a fold's ranker is fitted on; with fewer (a smoke-test dataset) TagRank ranks by the blend
MIN_FIT_POSTS = 20


class TagRank(Recommender):
    __doc__ = __doc__
    trainable = False
    losses = ()
    hparams = (HParam('candidates', 100, 'TagRank: candidates per post by the blend (and a quarter of it by each term, '
                                         'plus the user\'s own hashtags)', positive=True),
               HParam('folds', 4, 'TagRank: validation folds of the cross-fitting (each fold scored by the ranker '
                                  'fitted on the others)', positive=True),
               HParam('leaves', 31, 'TagRank: leaves per tree (LightGBM num_leaves)', positive=True),
               HParam('rank_lr', 0.05, 'TagRank: learning rate of the boosting', positive=True),
               HParam('trees', 400, 'TagRank: most boosting rounds (early stopping on held-out posts picks fewer)',
                      positive=True),
               HParam('min_leaf', 50, 'TagRank: fewest pairs in a leaf (LightGBM min_data_in_leaf)', positive=True),
               HParam('score_checkpoint', '', 'TagRank: a trained checkpoint of any registered model whose score '
                                              '(and rank) is one more feature (empty: none)'),
               TEXT)
    # 16 configurations, 8 drawn (the same budget as every model's)
    search = {'candidates': [50, 100], 'leaves': [15, 63], 'rank_lr': [0.03, 0.1], 'min_leaf': [20, 100]}
    model_inputs = ('score_checkpoint',)   # knobs that name another model's checkpoint: built and given as *_model

    def __init__(self, data, *, candidates, folds, leaves, rank_lr, trees, min_leaf, score_checkpoint, text,
                 score_checkpoint_model=None):
        super().__init__()
        import lightgbm
        if folds < 2:
            raise ValueError(f'TagRank needs folds >= 2 (got {folds}): each fold is scored by the others\' ranker')
        if score_checkpoint and score_checkpoint_model is None:
            raise ValueError(f'TagRank: score_checkpoint {score_checkpoint!r} was not built (build it with '
                             f'phr.training.checkpoint.build_model, which loads the checkpoints a model reads)')
        self.num_hashtag, self.num_video = data.num_hashtag, data.num_video
        self.n_candidates = int(candidates)
        # the classic evidence: every TagBlend term on (the centroid term too, which TagBlend leaves off), weights at
        # TagBlend's declared defaults
        blend_knobs = {h.name: h.default for h in TagBlend.hparams}
        self.blend = TagBlend(data, **dict(blend_knobs, centroid_mix=1.0, text=text))
        self.reads_tfidf, self.reads_text = self.blend.reads_tfidf, self.blend.reads_text
        self.other = score_checkpoint_model.eval() if score_checkpoint_model is not None else None
        if self.other is not None and (self.other.reads_tfidf or self.other.reads_text):
            self.reads_tfidf, self.reads_text = self.reads_tfidf or self.other.reads_tfidf, \
                self.reads_text or self.other.reads_text
        g = data.graph
        U, H = data.num_user, data.num_hashtag
        train_posts = torch.unique(data.train[:, :2], dim=0)
        self.register_buffer('user_posts', torch.log1p(torch.bincount(train_posts[:, 0], minlength=U).float()),
                             persistent=False)
        self.register_buffer('user_tags', torch.log1p(torch.bincount(g.pair_user, minlength=U).float()),
                             persistent=False)
        self.register_buffer('tag_users', torch.log1p(torch.bincount(g.pair_hashtag, minlength=H).float()),
                             persistent=False)
        self.vh_ptr, self.vh_idx = data.vh_ptr, data.vh_idx
        self._lock = threading.Lock()
        self._fit(lightgbm, data, folds, leaves, rank_lr, trees, min_leaf)

    # ---- candidates and features

    def _candidates(self, terms, blend):
        """[B, H] bool: the union of the blend's top ``candidates``, each term's top quarter of it, the user's own."""
        B, H = blend.shape
        mask = torch.zeros(B, H, dtype=torch.bool, device=blend.device)
        mask.scatter_(1, torch.topk(blend, min(self.n_candidates, H), dim=1).indices, True)
        k = min(max(1, self.n_candidates // 4), H)
        for t, x in terms.items():
            if t != 'popularity':
                mask.scatter_(1, torch.topk(x, k, dim=1).indices, True)
        return mask | (terms['counts'] > 0)

    @staticmethod
    def _log_rank(x):
        """log(1 + the rank of every entry within its row, best first): [B, H]."""
        order = torch.argsort(x, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(x.size(1), device=x.device).expand_as(order))
        return torch.log1p(rank.float())

    def encode(self):
        """The scoring model's propagation (``score_checkpoint``), once per pass: its score is a feature."""
        return {'other': self.other.encode()} if self.other is not None else {}

    def _features(self, enc, users, posts):
        """(flat row [E], hashtag [E], features [E, F] float32 numpy, blend [B, H]) of the candidates of a batch."""
        terms = self.blend.terms(users, posts)
        blend = self.blend.combine(terms)
        r, c = self._candidates(terms, blend).nonzero(as_tuple=True)
        cols, names = [], []
        for t in sorted(terms):
            cols += [terms[t][r, c], self._log_rank(terms[t])[r, c]]
            names += [t, f'{t} rank']
        top = blend.max(1).values
        cols += [blend[r, c], self._log_rank(blend)[r, c], blend[r, c] - top[r]]
        cols += [self.user_posts[users][r], self.user_tags[users][r], self.blend.train_uses[c].log1p(),
                 self.tag_users[c]]
        names += ['blend', 'blend rank', 'blend margin', 'user posts', 'user hashtags', 'hashtag uses',
                  'hashtag users']
        if self.other is not None:
            with torch.no_grad():
                s = self.other.score_all(enc['other'], users, posts).float()
            cols += [s[r, c], self._log_rank(s)[r, c]]
            names += ['model score', 'model rank']
        self.feature_names = names
        return r, c, torch.stack(cols, 1).cpu().numpy().astype(np.float32), blend

    def _labels(self, videos, r, c):
        """1 where the candidate (r, c) is one of the post's own hashtags (validation posts only, for fitting)."""
        H = self.num_hashtag
        lo, hi = self.vh_ptr[videos].tolist(), self.vh_ptr[videos + 1].tolist()
        keys = torch.cat([self.vh_idx[a:b] + i * H for i, (a, b) in enumerate(zip(lo, hi))])
        return np.isin((r * H + c).numpy(), keys.numpy()).astype(np.float32)

    # ---- fitting: cross-fitted on the validation posts

    def _fit(self, lightgbm, data, folds, leaves, rank_lr, trees, min_leaf, block=256):
        val = data.val
        n = len(val)
        self.rankers, self.best_iterations, self.recall_of_candidates = [], [], 0.0
        if n * (folds - 1) / folds < MIN_FIT_POSTS:
            print(f'TagRank: {n} validation posts are too few to fit a ranker on ({MIN_FIT_POSTS} a fold at least): '
                  f'it ranks by the blend of its terms')
            self.val_pos, self.importance = {}, None
            return
        rows, cols, feats, labels = [], [], [], []
        with torch.no_grad():
            enc = self.encode()
            for lo in range(0, n, block):
                users, videos = val.users[lo:lo + block], val.videos[lo:lo + block]
                r, c, x, _ = self._features(enc, users, Posts(ids=videos))
                rows.append(r + lo)
                cols.append(c)
                feats.append(x)
                labels.append(self._labels(videos, r, c))
        r, c = torch.cat(rows), torch.cat(cols)
        x, y = np.concatenate(feats), np.concatenate(labels)
        fold = torch.randperm(n, generator=torch.Generator().manual_seed(0)) % folds   # the fold of each post
        held = torch.randperm(n, generator=torch.Generator().manual_seed(1)) % 8 == 0  # early stopping posts
        params = dict(objective='lambdarank', metric='ndcg', eval_at=[10], num_leaves=int(leaves),
                      learning_rate=float(rank_lr), min_data_in_leaf=int(min_leaf), deterministic=True,
                      force_row_wise=True, num_threads=max(1, torch.get_num_threads()), verbosity=-1, seed=0)
        self.recall_of_candidates = float(y.sum()) / float(val.pos_mask.sum(1).sum())
        self.importance = np.zeros(x.shape[1])
        oof = np.zeros(len(x), dtype=np.float64)
        post_of_row = r.numpy()
        for f in range(folds):
            in_fold = (fold == f).numpy()[post_of_row]
            fit = ~in_fold & ~held.numpy()[post_of_row]
            stop = ~in_fold & held.numpy()[post_of_row]
            if not fit.any():
                raise ValueError(f'{data.path}: {n} validation posts are too few for TagRank\'s {folds} folds')
            groups = lambda m: np.unique(post_of_row[m], return_counts=True)[1]  # noqa: E731 (rows are by post)
            train_set = lightgbm.Dataset(x[fit], y[fit], group=groups(fit), free_raw_data=False)
            if stop.any():
                stop_set = lightgbm.Dataset(x[stop], y[stop], group=groups(stop), reference=train_set)
                booster = lightgbm.train(params, train_set, num_boost_round=int(trees), valid_sets=[stop_set],
                                         callbacks=[lightgbm.early_stopping(EARLY_STOP, verbose=False)])
            else:   # too few posts to hold any out (a tiny dataset): a fixed, small number of rounds
                booster = lightgbm.train(params, train_set, num_boost_round=min(int(trees), EARLY_STOP))
            self.rankers.append(booster)
            self.best_iterations.append(booster.best_iteration)
            self.importance += booster.feature_importance('gain')
            oof[in_fold] = booster.predict(x[in_fold], num_iteration=booster.best_iteration or None)
        # the validation posts' out-of-fold scores, kept as a table: their metrics never come from a ranker that saw
        # them
        self.val_pos = {int(v): i for i, v in enumerate(val.videos.tolist())}
        self.oof_rows, self.oof_cols, self.oof_scores = r, c, torch.from_numpy(oof).float()
        self.oof_ptr = torch.zeros(n + 1, dtype=torch.long)
        self.oof_ptr[1:] = torch.cumsum(torch.bincount(r, minlength=n), 0)

    # ---- scoring

    def score_all(self, enc, users, posts):
        r, c, x, blend = self._features(enc, users, posts)
        if not self.rankers:   # too few validation posts to fit on: the blend's order
            return blend
        if not posts.is_new and all(int(v) in self.val_pos for v in posts.ids.tolist()):
            s = self._out_of_fold(posts.ids, r, c)
        else:
            with self._lock:   # evaluation may score blocks in threads
                s = np.mean([b.predict(x, num_iteration=b.best_iteration or None) for b in self.rankers], axis=0)
            s = torch.from_numpy(s).float()
        out = blend.clone()
        top = blend.max(1).values
        s = s.to(blend.device)
        low = torch.full((len(users),), float('inf'), device=blend.device).scatter_reduce(0, r, s, 'amin')
        out[r, c] = s - low[r] + top[r] + 1.0   # candidates above every non-candidate, in the ranker's order
        return out

    def _out_of_fold(self, videos, r, c):
        """The stored out-of-fold scores of validation posts for the candidates (r, c) of this batch."""
        H = self.num_hashtag
        want = r * H + c
        idx = torch.tensor([self.val_pos[int(v)] for v in videos.tolist()])
        lo, hi = self.oof_ptr[idx], self.oof_ptr[idx + 1]
        keys, vals = [], []
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            keys.append(self.oof_cols[a:b] + i * H)
            vals.append(self.oof_scores[a:b])
        keys, vals = torch.cat(keys), torch.cat(vals)
        order = torch.argsort(keys)
        keys, vals = keys[order], vals[order]
        pos = torch.searchsorted(keys, want).clamp(max=len(keys) - 1)
        assert bool((keys[pos] == want).all()), 'the candidates of a validation post changed since it was fitted'
        return vals[pos]
