"""TagMix (**not the paper's model**, and not a graph model): the suite's answer to full ranking on real posts
(docs/extension.md). It learns, with a softmax over every hashtag, how to mix what the strongest simple
recommenders already know (the user's own counts, the similar posts' votes) with what a post's words say about each
hashtag and what a user tends to use beyond their counts.

.. math::
    s(u, v, h) = w_c \\log(1 + c_{uh}) + w_v \\, \\mathrm{votes}(v, h)
               + \\langle T x_v, q_h\\rangle + \\langle e_u, r_h\\rangle + b_h

- ``counts``: c_uh, the user's training count of h (leave-one-out for a training post, as GCN-PHR+'s count term);
- ``votes``: kNN's votes (``signals.NeighbourVotes``: the ``votes_k`` most similar training posts, cosine, each
  voting for its hashtags with its similarity; a training post is never its own neighbour);
- ``words``: x_v the post's sparse TF-IDF row (an EmbeddingBag over its terms, weighted by TF-IDF: a fastText-style
  linear text model) or, without TF-IDF rows, a linear map of its dense feature row;
- ``user``: a user x hashtag id term, and a per-hashtag bias.
w_c and w_v are learned, starting at 1; q and r start at zero, so before training the score is kNN's
(votes + log(1 + c), mix 1) and training learns what to add. Every term scores all H hashtags with a matmul or a
scatter (``score_all``), so the softmax over every hashtag (``--loss softmax``, the loss shaped like full ranking)
costs a few [B, H] passes per step.
"""
import torch
from torch import nn

from phr.core.base import DIM, HParam, Recommender
from phr.models.signals import TEXT, NeighbourVotes, content_rows, post_hashtag_keys, user_hashtag_counts
from phr.core.sparse import SparseTables, keys_to_csr


class TagMix(SparseTables, Recommender):
    __doc__ = __doc__
    losses = ('softmax',)
    hparams = (DIM,
               HParam('counts', True, "TagMix: the user's training count term w_c log(1 + c)"),
               HParam('votes', True, "TagMix: the similar posts' votes term w_v votes(v, h)"),
               HParam('words', True, "TagMix: the post's words x hashtag term <T x_v, q_h>"),
               HParam('user', True, 'TagMix: the user x hashtag id term <e_u, r_h> and the hashtag bias'),
               HParam('votes_k', 50, 'TagMix: how many of the most similar training posts vote', positive=True),
               TEXT)
    # the softmax over every hashtag is its loss (the one shaped like full ranking); 12 configurations, 8 drawn
    search = {'loss': ['softmax'], 'l_r': [1e-2, 3e-2], 'weight_decay': [0.0, 1e-3], 'decay_embeddings': [False],
              'votes_k': [25, 50, 100]}
    ablations = ('counts', 'votes', 'words', 'user')

    def __init__(self, data, *, dim, counts, votes, words, user, votes_k, text):
        super().__init__()
        H, V = data.num_hashtag, data.num_video
        self.num_hashtag, self.num_video = H, V
        self.counts, self.votes, self.words, self.user = bool(counts), bool(votes), bool(words), bool(user)
        self.set_features(data.features)
        self.text = content_rows(data, text)
        self.tfidf = data.text_tfidf if self.text == 'tfidf' else None      # data, not a tensor: not moved
        self.reads_tfidf = self.tfidf is not None
        if self.counts:
            keys, counts = user_hashtag_counts(data.graph, H)
            # leave-one-out: a training post's own hashtags are taken off its user's counts (val/test posts are
            # not training posts, so nothing is taken off theirs)
            own = post_hashtag_keys(data)
            self._register_csr('count', keys_to_csr(keys, counts, data.num_user, H))
            self._register_csr('own', keys_to_csr(own, torch.ones(len(own)), V, H))
            self.count_weight = nn.Parameter(torch.ones(()))
        if self.votes:
            self.vote_index = NeighbourVotes(data, self.features, votes_k, tfidf=self.tfidf)
            keys, values = self.vote_index.table(V, self.features if self.tfidf is None else None)
            self._register_csr('vote', keys_to_csr(keys, values, V, H))
            self.votes_weight = nn.Parameter(torch.ones(()))
        if self.words:
            if self.tfidf is not None:
                self.text_bag = nn.EmbeddingBag(self.tfidf.shape[1], dim, mode='sum')
                nn.init.normal_(self.text_bag.weight, std=0.01)
            else:
                self.text_lin = self.feature_linear(dim, bias=False)
            self.text_hashtag = nn.Embedding(H, dim)
            nn.init.zeros_(self.text_hashtag.weight)
        if self.user:
            self.user_emb = nn.Embedding(data.num_user, dim)
            nn.init.normal_(self.user_emb.weight, std=0.01)
            self.user_hashtag = nn.Embedding(H, dim)
            nn.init.zeros_(self.user_hashtag.weight)
            self.hashtag_bias = nn.Parameter(torch.zeros(H))

    def text_vector(self, posts):
        """T x_v: [B, d] from the posts' TF-IDF rows (or, without them, their dense feature rows)."""
        if self.tfidf is None:
            return self.text_lin(self.video_features(posts))
        rows = posts.need_tfidf(self) if posts.is_new else self.tfidf[posts.ids.cpu().numpy()]
        dev = self.text_bag.weight.device
        return self.text_bag(torch.from_numpy(rows.indices).long().to(dev),
                             torch.from_numpy(rows.indptr[:-1]).long().to(dev),
                             per_sample_weights=torch.from_numpy(rows.data).float().to(dev))

    def score_all(self, enc, users, posts):
        """[B] users and their posts -> [B, H] scores of every hashtag."""
        new = posts.is_new   # new posts: their feature rows, and (text=tfidf) TF-IDF rows
        s = torch.zeros(len(users), self.num_hashtag, device=users.device)
        if self.counts:
            count = self._dense('count', users)
            if not new:
                count = count - self._dense('own', posts.ids)
            s = s + self.count_weight * torch.log1p(count)
        if self.votes:
            if new:
                feats = self.video_features(posts) if self.tfidf is None else None
                votes = self.vote_index.votes(self.vote_index.post_similarities(posts, feats, self))
            else:
                votes = self._dense('vote', posts.ids)
            s = s + self.votes_weight * votes
        if self.words:
            s = s + self.text_vector(posts) @ self.text_hashtag.weight.T
        if self.user:
            s = s + self.user_emb(users) @ self.user_hashtag.weight.T + self.hashtag_bias
        return s
