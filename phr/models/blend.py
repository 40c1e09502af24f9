"""TagBlend (**not the paper's model**, and not a graph model): the classic recommenders' signals on real posts,
blended (docs/extension.md). No gradient training: like kNN it is a scoring rule whose few weights are the
configuration the sweep selects on validation, each signal a sparse table computed once:

.. math::
    s(u, v, h) = \\log(1 + c_{uh}) + m_v \\mathrm{votes}(v, h) + m_g \\mathrm{grams}(v, h)
               + m_o \\mathrm{own}(u, v, h) + m_p \\mathrm{peers}(u, h) + m_c \\mathrm{centroid}(v, h)
               + 10^{-3} \\mathrm{pop}(h)

- ``counts``: c_uh, the user's training count of h (leave-one-out for a training post);
- ``votes``: kNN's votes over the posts' words (``signals.NeighbourVotes``: the ``votes_k`` most similar training
  posts, cosine to the power ``power``; a training post is never its own neighbour);
- ``grams``: the same votes over character 3-5-gram TF-IDF of the post text (``phr.data.text.CharGrams``;
  hashtag words are glued and tweets misspell). Only for an imported dataset, which keeps its posts' texts;
- ``own``: the user's own other training posts, each voting for its hashtags with its similarity to the post to
  the same power (the count term, weighted by what the post is about);
- ``peers``: user-based collaborative filtering: the ``peers_k`` users whose training hashtag sets are most like
  the user's (cosine of the binary user x hashtag rows) vote for theirs with that cosine, log(1 + sum);
- ``centroid``: the cosine of the post's content row (the rows the votes compare) to the hashtag's centroid, the
  sum of the rows of the training posts that carry it (Rocchio's classifier; leave-one-out for a training post: its
  own row is taken out of its hashtags' centroids). A content-to-hashtag signal that does not depend on a few
  neighbours: it helps on the generated presets and not on real tweets (results/tried/tagblend_centroid.md);
- ``pop``: log(1 + the hashtag's training uses) / its maximum (leave-one-out for a training post): it orders the
  hashtags every other term scores 0, as kNN's tie-break does.
With m_g = m_o = m_p = m_c = 0 it is kNN (``mix`` = m_v, ties broken by popularity). Learning the m's by a softmax over
every hashtag on the training posts (leave-one-out) was tried and moved them away from what ranks well on
validation (results/tried/tagblend_trained.md); so they are knobs, searched with the same 8-configuration budget
as every model's.

The peers term is per user: a training post's own hashtags still shape which users are its user's peers (not what
they vote for); the leave-one-out covers the other terms.
"""
import numpy as np
import scipy.sparse as sp
import torch

from phr.data.text import CharGrams, strip_text
from phr.core.base import HParam, Recommender
from phr.models.signals import (TEXT, NeighbourVotes, content_rows, hashtag_popularity, own_post_votes, peer_votes,
                                post_hashtag_keys, user_hashtag_counts)
from phr.core.sparse import SparseTables, csr_keys, keys_to_csr

TIE_BREAK = 1e-3
SWITCHES = ('auto', 'on', 'off')


class TagBlend(SparseTables, Recommender):
    __doc__ = __doc__
    trainable = False
    losses = ()
    hparams = (HParam('votes_k', 50, 'TagBlend: how many of the most similar training posts vote (words and grams)',
                      positive=True),
               HParam('power', 2.0, "TagBlend: a similar post votes with its cosine to this power (votes, grams, "
                                    "own)", positive=True, maximum=16.0),
               HParam('peers_k', 50, 'TagBlend: how many of the most similar users vote in the peers term',
                      positive=True),
               HParam('mix', 2.0, "TagBlend: weight m_v of the similar posts' word votes"),
               HParam('grams_mix', 2.0, "TagBlend: weight m_g of the similar posts' character n-gram votes (0: off)"),
               HParam('own_mix', 1.0, "TagBlend: weight m_o of the user's own similar posts (0: off)"),
               HParam('peers_mix', 0.1, 'TagBlend: weight m_p of the similar users (0: off)'),
               HParam('centroid_mix', 0.0, "TagBlend: weight m_c of the cosine to the hashtags' centroids (0: off)"),
               HParam('grams', 'auto', 'TagBlend: the character n-gram votes term: auto (where the dataset keeps its '
                                       'posts\' texts, posts.jsonl) | on | off', choices=SWITCHES),
               TEXT)
    # 64 configurations, 8 drawn (the same budget as kNN's 50)
    search = {'votes_k': [50, 100], 'mix': [2.0, 4.0], 'grams_mix': [1.0, 2.0], 'own_mix': [1.0, 3.0],
              'peers_mix': [0.1, 0.3], 'centroid_mix': [0.0, 8.0]}

    def __init__(self, data, *, votes_k, power, peers_k, mix, grams_mix, own_mix, peers_mix, centroid_mix, grams,
                 text):
        super().__init__()
        if grams not in SWITCHES:
            raise ValueError(f'grams {grams!r}: choose from {SWITCHES}')
        if min(mix, grams_mix, own_mix, peers_mix, centroid_mix) < 0:
            raise ValueError(f'TagBlend weights must be >= 0 (got mix={mix}, grams_mix={grams_mix}, '
                             f'own_mix={own_mix}, peers_mix={peers_mix}, centroid_mix={centroid_mix})')
        H, V = data.num_hashtag, data.num_video
        self.num_hashtag, self.num_video = H, V
        self.set_features(data.features)
        self.text = content_rows(data, text)
        self.tfidf = data.text_tfidf if self.text == 'tfidf' else None      # data, not a tensor: not moved
        self.reads_tfidf = self.tfidf is not None
        texts = data.texts if grams != 'off' and grams_mix > 0 else None
        if grams == 'on' and texts is None:
            raise ValueError(f'{data.path}: grams=on needs the posts\' texts (posts.jsonl, written by '
                             f'scripts/import_posts.py); this dataset has none: use grams auto or off')
        self._grams = CharGrams(texts) if texts is not None else None
        char_rows = self._grams.rows if self._grams is not None else None
        self.mix = {'counts': 1.0, 'votes': float(mix), 'grams': float(grams_mix) if char_rows is not None else 0.0,
                    'own': float(own_mix), 'peers': float(peers_mix), 'centroid': float(centroid_mix),
                    'popularity': TIE_BREAK}
        self.uses = {t: w > 0 for t, w in self.mix.items()}

        keys, counts = user_hashtag_counts(data.graph, H)
        own_tags = post_hashtag_keys(data)
        self._register_csr('count', keys_to_csr(keys, counts, data.num_user, H))
        self._register_csr('mine', keys_to_csr(own_tags, torch.ones(len(own_tags)), V, H))   # for leave-one-out
        if self.uses['votes'] or self.uses['own']:   # the index also scores new posts (votes and own)
            self.vote_index = NeighbourVotes(data, self.features, votes_k, power, tfidf=self.tfidf)
        if self.uses['votes']:
            table = self.vote_index.table(V, self.features if self.tfidf is None else None)
            self._register_csr('votes', keys_to_csr(*table, V, H))
        if self.uses['grams']:
            self.grams_index = NeighbourVotes(data, self.features, votes_k, power, tfidf=char_rows)
            self._register_csr('grams', keys_to_csr(*self.grams_index.table(V), V, H))
        self.reads_text = self.uses['grams']    # a new post's n-gram votes need its text (``new_posts_text``)
        if self.uses['own']:
            rows = self.tfidf if self.tfidf is not None else \
                torch.nn.functional.normalize(self.features, dim=1).numpy()
            self._register_csr('own', keys_to_csr(*csr_keys(own_post_votes(data, rows, power)), V, H))
        self.power = float(power)
        if self.uses['own']:
            # for new posts: who owns each training post of the index, and its hashtags as a sparse [H, Vt]
            pool = torch.unique(data.train[:, 1])
            owner = torch.full((V,), -1, dtype=torch.long)
            owner[data.train[:, 1]] = data.train[:, 0]
            lens = data.vh_ptr[pool + 1] - data.vh_ptr[pool]
            col = torch.repeat_interleave(torch.arange(len(pool)), lens)
            row = data.vh_idx[torch.cat([torch.arange(data.vh_ptr[p], data.vh_ptr[p + 1]) for p in pool.tolist()])]
            self.register_buffer('pool_owner', owner[pool], persistent=False)
            self.register_buffer('pool_tags', torch.sparse_coo_tensor(torch.stack([row, col]), torch.ones(len(row)),
                                                                      (H, len(pool)), check_invariants=True).coalesce(),
                                 persistent=False)
        if self.uses['peers']:
            self._register_csr('peers', keys_to_csr(*csr_keys(peer_votes(data, peers_k)), data.num_user, H))
        if self.uses['centroid']:
            self._build_centroids(own_tags)
        pop = hashtag_popularity(data)
        self.register_buffer('train_uses', pop, persistent=False)
        self.pop_scale = float(np.log1p(max(pop.max().item(), 1.0)))

    def terms(self, users, posts):
        """Each used term's [B, H] table for [B] users and their posts (leave-one-out for training posts)."""
        if posts.is_new:
            return self.new_post_terms(users, posts)
        videos = posts.ids
        mine = self._dense('mine', videos)
        out = {'counts': torch.log1p(self._dense('count', users) - mine),
               'popularity': torch.log1p(self.train_uses - mine) / self.pop_scale}
        if self.uses['votes']:
            out['votes'] = self._dense('votes', videos)
        if self.uses['grams']:
            out['grams'] = self._dense('grams', videos)
        if self.uses['own']:
            out['own'] = self._dense('own', videos)
        if self.uses['peers']:
            out['peers'] = self._dense('peers', users)
        if self.uses['centroid']:
            out['centroid'] = self._centroid_term(*self._content_rows(posts), mine=mine)
        return out

    def new_post_terms(self, users, posts):
        """The terms for new posts (``Posts`` of feature rows and, when posts are compared by TF-IDF, their TF-IDF
        rows): the similarities to the training posts are computed for them, as kNN's are. The character n-gram term
        reads the posts' raw texts (``Posts.texts``: scripts/recommend.py --text), vectorised by the n-gram vectoriser
        fitted on the dataset's posts."""
        H = self.num_hashtag
        out = {'counts': torch.log1p(self._dense('count', users)),
               'popularity': torch.log1p(self.train_uses).expand(len(users), H) / self.pop_scale}
        if self.uses['votes'] or self.uses['own']:
            feats = self.video_features(posts) if self.tfidf is None else None
            sims = self.vote_index.post_similarities(posts, feats, self)
        if self.uses['own']:
            w = sims.clamp(min=0) ** self.power * (self.pool_owner[None, :] == users[:, None])
            out['own'] = torch.sparse.mm(self.pool_tags, w.T.contiguous()).T
        if self.uses['votes']:
            out['votes'] = self.vote_index.votes(sims)
        if self.uses['grams']:
            sims = self.grams_index.similarities(rows=self._grams.transform(posts.need_texts(self)))
            out['grams'] = self.grams_index.votes(sims)
        if self.uses['peers']:
            out['peers'] = self._dense('peers', users)
        if self.uses['centroid']:
            x = posts.need_tfidf(self) if self.tfidf is not None else \
                torch.nn.functional.normalize(self.video_features(posts), dim=1)
            out['centroid'] = self._centroid_term(*self._row_products(x))
        return out

    def _build_centroids(self, own_tags):
        """Each hashtag's centroid: the sum of the content rows (L2-normalised) of the training posts carrying it,
        kept as [terms, H] (scipy, TF-IDF rows) or [F, H] (dense rows), with its squared norm [H]."""
        H, V = self.num_hashtag, self.num_video
        v, h = (own_tags // H).numpy(), (own_tags % H).numpy()
        if self.tfidf is not None:
            tags = sp.csr_matrix((np.ones(len(v), dtype=np.float32), (h, v)), shape=(H, V))
            cent = (tags @ self.tfidf).tocsr()                                  # [H, terms]
            sq = np.asarray(cent.multiply(cent).sum(1), dtype=np.float64).ravel()
            self.centroid_t = cent.T.tocsr()                                    # data, not a tensor: not moved
            self.register_buffer('centroid_sq', torch.from_numpy(sq).float(), persistent=False)
        else:
            x = torch.nn.functional.normalize(self.features, dim=1)
            cent = torch.zeros(H, x.size(1), dtype=x.dtype).index_add_(0, torch.from_numpy(h), x[torch.from_numpy(v)])
            self.register_buffer('centroid_t', cent.T.contiguous(), persistent=False)
            self.register_buffer('centroid_sq', (cent * cent).sum(1), persistent=False)

    def _content_rows(self, posts):
        """(dot products [B, H] of dataset posts with every centroid, their rows' squared norms [B])."""
        if self.tfidf is not None:
            return self._row_products(self.tfidf[posts.ids.cpu().numpy()])
        return self._row_products(torch.nn.functional.normalize(self.video_features(posts), dim=1))

    def _row_products(self, x):
        dev = self.centroid_sq.device
        if self.tfidf is not None:
            dots = torch.from_numpy((x @ self.centroid_t).toarray()).to(dev)
            sq = torch.from_numpy(np.asarray(x.multiply(x).sum(1), dtype=np.float32).ravel()).to(dev)
            return dots, sq
        return x @ self.centroid_t, (x * x).sum(1)

    def _centroid_term(self, dots, sq, mine=None):
        """[B, H] cosine of each post's row to each hashtag's centroid; ``mine`` [B, H] (1 where the post is a
        training post carrying the hashtag): that centroid without the post's own row (leave-one-out)."""
        norm = self.centroid_sq.clamp(min=0).sqrt()
        out = torch.where(norm > 0, dots / norm.clamp(min=1e-12), torch.zeros((), device=dots.device))
        if mine is not None:
            own = mine > 0
            loo_sq = (self.centroid_sq - 2 * dots + sq[:, None]).clamp(min=0)
            loo = torch.where(loo_sq > 1e-10, (dots - sq[:, None]) / loo_sq.clamp(min=1e-10).sqrt(),
                              torch.zeros((), device=dots.device))
            out = torch.where(own, loo, out)
        return out

    def combine(self, terms):
        """The blend of the terms' [B, H] tables: the sum of each weighted by its ``mix``."""
        s = torch.zeros_like(terms['counts'])
        for t, x in terms.items():
            s = s + self.mix[t] * x
        return s

    def score_all(self, enc, users, posts):
        """[B] users and their posts -> [B, H] scores of every hashtag."""
        return self.combine(self.terms(users, posts))
