"""The evidence several models share, each computed once here from the training data: the user's counts of each
hashtag and the training posts' own (post, hashtag) pairs that leave-one-out takes off them, hashtag popularity,
what posts are compared by (``text``), the training posts as a similarity index that votes for hashtags
(``NeighbourVotes``), the user's own similar posts, and similar users (peers). Models read these; none of them is
a model."""
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from phr.core.base import HParam
from phr.core.sparse import csr_positions


def user_hashtag_counts(graph, num_hashtag):
    """(keys, counts) of the training graph's (user, hashtag) pairs: keys u * H + h, sorted (pairs are grouped by user,
    then hashtag), counts |V(u, h)| as float; ``sorted_lookup(keys, counts, u * H + h)`` is the user's count of h."""
    return graph.pair_user * num_hashtag + graph.pair_hashtag, graph.pair_count.float()


def post_hashtag_keys(data):
    """The training posts' own (post, hashtag) pairs as sorted keys v * H + h: what leave-one-out takes off a training
    post's user counts (c_uh - 1 for its own hashtags), so that in training as at test time a count says how often the
    user chose h on *other* posts."""
    return torch.unique(data.train[:, 1] * data.num_hashtag + data.train[:, 2])


def hashtag_popularity(data):
    """Training uses per hashtag: [H] float."""
    return torch.bincount(data.train[:, 2], minlength=data.num_hashtag).float()


TEXTS = ('auto', 'dense', 'tfidf')
# the knob of every model that compares posts (kNN, TagMix, TagBlend): declared once
TEXT = HParam('text', 'auto', 'what posts are compared by: dense (the feature rows) | tfidf (the sparse TF-IDF rows an '
                              'import writes) | auto (tfidf where the dataset has them)', choices=TEXTS)


def content_rows(data, text):
    """What a post is compared by: ``dense``, its feature row (all blocks); ``tfidf``, its sparse TF-IDF row
    (``data.text_tfidf``, written by scripts/import_posts.py); ``auto``, the TF-IDF rows where the dataset has them."""
    if text not in TEXTS:
        raise ValueError(f'text {text!r}: choose from {TEXTS}')
    if text == 'tfidf' and data.text_tfidf is None:
        raise ValueError(f'{data.path}: no sparse TF-IDF rows (FeatureText_tfidf.npz, written by scripts/import_posts.py); '
                         f'use text=dense')
    return 'tfidf' if text == 'tfidf' or (text == 'auto' and data.text_tfidf is not None) else 'dense'


class NeighbourVotes(nn.Module):
    """The training posts as a similarity index: for a post's content vector, the ``k`` most similar training posts
    (cosine) vote for each of their hashtags with weight max(sim, 0) ** ``power``. Content vectors are dense feature
    rows (``features``, zero columns dropped) or, with ``tfidf`` (a scipy CSR [V, terms] of L2-normalised rows),
    sparse TF-IDF rows, compared on the CPU. Used by ``SimilarPosts`` (kNN) and, as an input term, by GCN-PHR+kNN."""

    def __init__(self, data, features, k=50, power=1.0, tfidf=None):
        super().__init__()
        self.num_hashtag, self.k, self.power = data.num_hashtag, int(k), float(power)
        pool = torch.unique(data.train[:, 1])                                     # the training posts
        self.register_buffer('pool_video', pool, persistent=False)
        self.tfidf = tfidf                                                        # data, not a tensor: not moved
        self.pool_tfidf = tfidf[pool.numpy()].T.tocsr() if tfidf is not None else None   # [terms, Vt]
        self.register_buffer('pool', F.normalize(features[pool], dim=1) if tfidf is None else torch.zeros(0),
                             persistent=False)                                    # [Vt, F]
        lens = data.vh_ptr[pool + 1] - data.vh_ptr[pool]
        ptr = torch.zeros(len(pool) + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(lens, 0)
        first = torch.repeat_interleave(data.vh_ptr[pool], lens)
        offset = torch.arange(int(lens.sum())) - torch.repeat_interleave(ptr[:-1], lens)
        self.register_buffer('tag_ptr', ptr, persistent=False)                    # hashtags of each pool post, CSR
        self.register_buffer('tag_idx', data.vh_idx[first + offset], persistent=False)

    def similarities(self, features=None, videos=None, rows=None):
        """[B, Vt] cosine of each post to every training post: dense feature rows [B, F], or (``tfidf``) the posts'
        ids ``videos`` [B], whose sparse rows are looked up, or new posts' sparse rows ``rows`` [B, terms]."""
        if self.pool_tfidf is None:
            return F.normalize(features.to(self.pool.dtype), dim=1) @ self.pool.T
        if rows is None and videos is None:
            raise ValueError('this model compares posts by their TF-IDF rows (text=tfidf): a new post needs one; '
                             'give it as a post of the dataset (--video), or use text=dense')
        rows = self.tfidf[videos.cpu().numpy()] if rows is None else rows
        sims = (rows @ self.pool_tfidf).toarray()
        return torch.from_numpy(sims).to(self.pool_video.device)

    def post_similarities(self, posts, features=None, model=None):
        """[B, Vt] similarities of ``posts`` (a ``Posts``) to every training post: by their TF-IDF rows when the index
        compares TF-IDF rows (a dataset post's looked up, a new post's from ``posts.tfidf``, which ``model`` needs
        then: ``Posts.need_tfidf``), else by ``features``, the posts' dense feature rows [B, F]."""
        if self.pool_tfidf is None:
            return self.similarities(features=features)
        if posts.is_new:
            return self.similarities(rows=posts.need_tfidf(model))
        return self.similarities(videos=posts.ids)

    def neighbours(self, sims, exclude=None):
        """[B, Vt] similarities -> (pool index [B, k], weight [B, k]); ``exclude`` [B] pool index of each row's own
        post (-1: none), never its own neighbour (leave-one-out for training posts)."""
        if exclude is not None:
            own = exclude >= 0
            sims[torch.nonzero(own).squeeze(1), exclude[own]] = float('-inf')
        top = torch.topk(sims, min(self.k, sims.size(1)), dim=1)
        return top.indices, top.values.clamp(min=0) ** self.power

    def flat_votes(self, index, weight):
        """(row, hashtag, weight) of every vote of the neighbours ``index`` [B, k] with ``weight`` [B, k]."""
        pos, at = csr_positions(self.tag_ptr, index.reshape(-1))   # pos: which (row, neighbour) each vote is of
        return pos // index.size(1), self.tag_idx[at], weight.reshape(-1)[pos]

    def table(self, num_video, features=None, block=1024):
        """Every post's votes as sorted (post, hashtag) keys v * H + h and their summed weights, computed once in
        blocks of posts ([block, Vt] similarities at once); a training post is never its own neighbour
        (leave-one-out). ``features``: the dense rows compared, when the index is not TF-IDF."""
        H = self.num_hashtag
        pool_of = torch.full((num_video,), -1, dtype=torch.long)
        pool_of[self.pool_video.cpu()] = torch.arange(len(self.pool_video))
        keys, weights = [], []
        with torch.no_grad():
            for lo in range(0, num_video, block):
                videos = torch.arange(lo, min(lo + block, num_video))
                sims = self.similarities(features[videos] if self.pool_tfidf is None else None, videos)
                index, weight = self.neighbours(sims, pool_of[videos])
                row, tags, w = self.flat_votes(index, weight)
                keys.append(videos[row] * H + tags)
                weights.append(w)
        keys, weights = torch.cat(keys), torch.cat(weights)
        uniq, inverse = torch.unique(keys, return_inverse=True)
        return uniq, torch.zeros(len(uniq)).index_add_(0, inverse, weights)

    def votes(self, sims, exclude=None):
        """[B, Vt] similarities -> [B, H] similarity-weighted votes of the k nearest training posts."""
        index, weight = self.neighbours(sims, exclude)
        row, tags, w = self.flat_votes(index, weight)
        out = torch.zeros(len(sims), self.num_hashtag, device=weight.device, dtype=weight.dtype)
        return out.index_put_((row, tags), w, accumulate=True)


def own_post_votes(data, rows, power):
    """[V, H] scipy CSR: for each post v of user u, the sum over u's training posts p != v of
    max(cos(v, p), 0) ** power times p's hashtags. ``rows``: [V, terms] L2-normalised content rows (scipy CSR or a
    dense numpy array)."""
    V, H = data.num_video, data.num_hashtag
    tr = data.train.numpy()
    owner = np.full(V, -1, dtype=np.int64)
    for split in (data.val, data.test):
        owner[split.videos.numpy()] = split.users.numpy()
    owner[tr[:, 1]] = tr[:, 0]
    tags = sp.csr_matrix((np.ones(len(data.vh_idx), dtype=np.float32), data.vh_idx.numpy(), data.vh_ptr.numpy()),
                         shape=(V, H))
    pool = np.zeros(V, dtype=bool)
    pool[tr[:, 1]] = True
    by_user = np.argsort(owner, kind='stable')
    starts = np.searchsorted(owner[by_user], np.arange(data.num_user + 1))
    out_rows, out_cols, out_vals = [], [], []
    for u in range(data.num_user):
        posts = by_user[starts[u]:starts[u + 1]]
        mine = posts[pool[posts]]
        if len(posts) == 0 or len(mine) == 0:
            continue
        sims = rows[posts] @ rows[mine].T
        sims = np.asarray(sims.todense() if sp.issparse(sims) else sims, dtype=np.float32)
        sims[posts[:, None] == mine[None, :]] = 0.0                    # never its own post (leave-one-out)
        sims = np.maximum(sims, 0) ** power
        votes = sp.csr_matrix(sims) @ tags[mine]
        votes = votes.tocoo()
        out_rows.append(posts[votes.row])
        out_cols.append(votes.col)
        out_vals.append(votes.data)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
    return sp.csr_matrix((cat(out_vals, np.float32), (cat(out_rows, np.int64), cat(out_cols, np.int64))),
                         shape=(V, H))


def peer_votes(data, k):
    """[U, H] scipy CSR: log(1 + sum over the ``k`` users u' most like u of cos(u, u') [u' used h in training]),
    cosine of the binary user x hashtag rows of training."""
    U, H = data.num_user, data.num_hashtag
    g = data.graph
    b = sp.csr_matrix((np.ones(len(g.pair_user), dtype=np.float32), (g.pair_user.numpy(), g.pair_hashtag.numpy())),
                      shape=(U, H))
    norm = np.sqrt(np.asarray(b.sum(1)).ravel())
    bn = sp.diags(1 / np.maximum(norm, 1e-12)).astype(np.float32) @ b
    parts = []
    for lo in range(0, U, 1024):
        sims = np.asarray((bn[lo:lo + 1024] @ bn.T).todense(), dtype=np.float32)
        sims[np.arange(len(sims)), np.arange(lo, lo + len(sims))] = 0.0   # a user is not their own peer
        kk = min(k, U - 1)
        if kk < 1:
            parts.append(sp.csr_matrix((len(sims), U), dtype=np.float32))
            continue
        idx = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        w = np.take_along_axis(sims, idx, 1)
        parts.append(sp.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, len(sims) * kk + 1, kk)),
                                   shape=(len(sims), U)))
    votes = (sp.vstack(parts).tocsr() @ b).tocsr()
    votes.data = np.log1p(votes.data)
    return votes
