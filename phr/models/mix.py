"""TagMix (**not the paper's model**, and not a graph model): the suite's answer to full ranking on real posts
(docs/extension.md). It learns, with a softmax over every hashtag, how to mix what the strongest simple
recommenders already know (the user's own counts, the similar posts' votes) with what a post's words say about each
hashtag and what a user tends to use beyond their counts.

.. math::
    s(u, v, h) = w_c \\log(1 + c_{uh}) + w_v \\, \\mathrm{votes}(v, h)
               + \\langle T x_v, q_h\\rangle + \\langle e_u, r_h\\rangle + b_h

- ``counts``: c_uh, the user's training count of h (leave-one-out for a training post, as GCN-PHR+'s count term);
- ``votes``: kNN's votes (``baselines.NeighbourVotes``: the ``votes_k`` most similar training posts, cosine, each
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

from phr.models.baselines import TEXTS, NeighbourVotes, content_rows
from phr.models.base import DIM, HParam, Recommender, csr_positions, user_hashtag_counts


def keys_to_csr(keys, values, num_rows, width):
    """Sorted keys row * width + col with their values -> CSR (ptr [num_rows + 1], cols, values)."""
    rows = keys // width
    ptr = torch.zeros(num_rows + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return ptr, keys % width, values


def csr_dense(ptr, cols, values, ids, width):
    """Rows ``ids`` [B] of a CSR table as a dense [B, width] tensor (zeros where a row has no entry)."""
    row, at = csr_positions(ptr, ids)
    out = torch.zeros(len(ids), width, dtype=values.dtype, device=values.device)
    out[row, cols[at]] = values[at]
    return out


class SparseTables:
    """Per-row sparse tables of a model (CSR buffers, data not weights) read back as dense [B, H] rows: TagMix's and
    TagBlend's terms. Needs ``self.num_hashtag``."""

    def _register_csr(self, name, table):
        """A CSR table (ptr, cols, values) as the buffers ``name``_ptr / _cols / _values (data, not weights)."""
        for part, t in zip(('ptr', 'cols', 'values'), table):
            self.register_buffer(f'{name}_{part}', t, persistent=False)

    def _dense(self, name, ids):
        """Rows ``ids`` [B] of the table ``name`` as a dense [B, H] tensor."""
        return csr_dense(getattr(self, f'{name}_ptr'), getattr(self, f'{name}_cols'), getattr(self, f'{name}_values'),
                         ids, self.num_hashtag)


class TagMix(SparseTables, Recommender):
    __doc__ = __doc__
    losses = ('softmax',)
    hparams = (DIM,
               HParam('counts', True, "TagMix: the user's training count term w_c log(1 + c)"),
               HParam('votes', True, "TagMix: the similar posts' votes term w_v votes(v, h)"),
               HParam('words', True, "TagMix: the post's words x hashtag term <T x_v, q_h>"),
               HParam('user', True, 'TagMix: the user x hashtag id term <e_u, r_h> and the hashtag bias'),
               HParam('votes_k', 50, 'TagMix: how many of the most similar training posts vote', positive=True),
               HParam('text', 'auto', 'what posts are compared by: dense (the feature rows) | tfidf (the sparse TF-IDF '
                                      'rows an import writes) | auto (tfidf where the dataset has them)',
                      choices=TEXTS))
    # the softmax over every hashtag is its loss (the one shaped like full ranking); 12 configurations, 8 drawn
    search = {'loss': ['softmax'], 'l_r': [1e-2, 3e-2], 'weight_decay': [0.0, 1e-3], 'decay_embeddings': [False],
              'votes_k': [25, 50, 100]}
    ablations = ('counts', 'votes', 'words', 'user')

    def __init__(self, data, dim=64, counts=True, votes=True, words=True, user=True, votes_k=50, text='auto'):
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
            own = torch.unique(data.train[:, 1] * H + data.train[:, 2])
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

    def text_vector(self, videos):
        """T x_v: [B, d] for video ids [B] (or dense feature rows [B, F] without TF-IDF rows)."""
        if self.tfidf is None:
            return self.text_lin(self.video_features(videos))
        rows = self.new_tfidf_rows(len(videos)) if videos.is_floating_point() else self.tfidf[videos.cpu().numpy()]
        dev = self.text_bag.weight.device
        return self.text_bag(torch.from_numpy(rows.indices).long().to(dev),
                             torch.from_numpy(rows.indptr[:-1]).long().to(dev),
                             per_sample_weights=torch.from_numpy(rows.data).float().to(dev))

    def score_all(self, enc, users, videos):
        """[B] users, [B] video ids (or [B, F] feature rows of new posts) -> [B, H] scores of every hashtag."""
        new = videos.is_floating_point()   # new posts: feature rows, and (text=tfidf) TF-IDF rows (new_posts_tfidf)
        s = torch.zeros(len(users), self.num_hashtag, device=users.device)
        if self.counts:
            count = self._dense('count', users)
            if not new:
                count = count - self._dense('own', videos)
            s = s + self.count_weight * torch.log1p(count)
        if self.votes:
            if new:
                sims = self.vote_index.new_post_similarities(self, videos)
                votes = self.vote_index.votes(sims)
            else:
                votes = self._dense('vote', videos)
            s = s + self.votes_weight * votes
        if self.words:
            s = s + self.text_vector(videos) @ self.text_hashtag.weight.T
        if self.user:
            s = s + self.user_emb(users) @ self.user_hashtag.weight.T + self.hashtag_bias
        return s

    def score(self, enc, users, videos, hashtags):
        return torch.gather(self.score_all(enc, users, videos), 1, hashtags)
