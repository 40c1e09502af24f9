"""The paper's four baselines (SPEC §5), adapted to (user, 2276-d video features, candidate hashtags), and two
popularity floors. Same interface as model.py (``model.Recommender``): ``enc = model.encode()``,
``model.score(enc, users, videos, hashtags [B, C]) -> [B, C]``; the baselines also have
``score_all(enc, users, videos) -> [B, H]`` for their native full-softmax / BCE losses (``train.py --loss``).
User history comes from the training triples only. Each class declares its knobs (``hparams``) and is registered
by name in ``registry.py``.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from phr.models.base import DIM, HParam, Recommender, csr_positions, gather_rows, lookup_pairs, user_hashtag_counts


def hashtag_popularity(data):
    """Training uses per hashtag: [H] float."""
    return torch.bincount(data.train[:, 2], minlength=data.num_hashtag).float()


def user_history(data, length, tfidf=False):
    """Each user's top-``length`` training hashtags: [U, length] ids, padded with H (an all-zero embedding row).

    Ranked by how often the user used them, or by TF-IDF (tf = share of the user's uses, idf = log(U / users of h)).
    """
    g = data.graph
    U, H = data.num_user, data.num_hashtag
    weight = g.pair_count.float()
    if tfidf:
        tf = weight / scatter(weight, g.pair_user, 0, U, reduce='sum')[g.pair_user]
        users_of = torch.bincount(g.pair_hashtag, minlength=H).float()
        weight = tf * torch.log(U / users_of[g.pair_hashtag])
    # sort pairs by (user, -weight), then the rank of each pair inside its user
    order = torch.argsort(weight, descending=True, stable=True)
    order = order[torch.argsort(g.pair_user[order], stable=True)]
    users = g.pair_user[order]
    start = torch.searchsorted(users, torch.arange(U))
    rank = torch.arange(len(users)) - start[users]
    keep = rank < length
    hist = torch.full((U, length), H, dtype=torch.long)
    hist[users[keep], rank[keep]] = g.pair_hashtag[order][keep]
    return hist


class FeatureModel(Recommender):
    """Base of the baselines: features as a non-persistent buffer, a learned hashtag table and bias."""
    losses = ('bpr', 'softmax', 'bce')
    hparams = (DIM,)

    def __init__(self, data, dim=64):
        super().__init__()
        self.num_user, self.num_hashtag = data.num_user, data.num_hashtag
        self.set_features(data.features)

    def query(self, enc, users, videos):
        """[B] users, [B] video ids or [B, F] feature rows -> [B, d] vector scored against hashtag vectors."""
        raise NotImplementedError

    def hashtag_vectors(self):
        return self.hashtag_emb.weight[:self.num_hashtag], self.hashtag_bias[:self.num_hashtag]

    def score(self, enc, users, videos, hashtags):
        q = self.query(enc, users, videos)
        e, b = self.hashtag_vectors()
        return (gather_rows(e, hashtags) @ q.unsqueeze(-1)).squeeze(-1) + b[hashtags]

    def score_all(self, enc, users, videos):
        e, b = self.hashtag_vectors()
        return self.query(enc, users, videos) @ e.T + b


class UTM(FeatureModel):
    """User conditional hashtag prediction for images (Denton et al., KDD 2015), the gated "3-way" model.

    Original: phi = W_o[(W_x x) * (W_m m_u)] with x a CNN image embedding and m_u user metadata (age, gender,
    location); score = phi . e_h, trained with WARP. Adapted: x = the 2276-d video features (no CNN), m_u = a
    learned user id embedding + the mean embedding of the user's 30 most used training hashtags (the authors passed
    a literal 30 to UTM: plausibly that history length); trained with BPR by default, ``--loss softmax`` as the
    cheap native alternative (WARP not implemented).
    """

    hparams = (DIM, HParam('history', 30, "how many of the user's most used training hashtags m_u averages",
                                     positive=True))

    def __init__(self, data, dim=64, history=30):
        super().__init__(data, dim)
        self.lin_x = self.feature_linear(dim)
        self.user_emb = nn.Embedding(data.num_user, dim)
        self.hist_emb = nn.Embedding(data.num_hashtag + 1, dim, padding_idx=data.num_hashtag)
        self.lin_m = nn.Linear(dim, dim)
        self.lin_o = nn.Linear(dim, dim)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))
        for emb in (self.user_emb, self.hist_emb, self.hashtag_emb):
            nn.init.normal_(emb.weight, std=0.1)
        self.register_buffer('history', user_history(data, history), persistent=False)

    def query(self, enc, users, videos):
        hist = self.history[users]                                        # [B, L]
        n = (hist < self.num_hashtag).sum(1, keepdim=True).clamp(min=1)
        m = self.user_emb(users) + self.hist_emb(hist).sum(1) / n
        return self.lin_o(self.lin_x(self.video_features(videos)) * self.lin_m(m))


class ConTagNet(FeatureModel):
    """ConTagNet (Rawat & Kankanhalli, MM 2016): a content CNN and a user-context net, concatenated into one
    tag-score layer.

    Original: image CNN + a context branch over time and geo-location features, multi-label loss over tags.
    Adapted: content branch = a 2-layer MLP on the 2276-d features (no CNN); context = the user id embedding
    (no time or geo in this data); the shared tag-score layer = one vector + bias per hashtag over the
    concatenation. BPR by default (as the authors trained it); ``--loss bce`` is its native multi-label loss.
    """

    def __init__(self, data, dim=64):
        super().__init__(data, dim)
        self.content = nn.Sequential(self.feature_linear(dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.user_emb = nn.Embedding(data.num_user, dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, 2 * dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))

    def query(self, enc, users, videos):
        return torch.cat([self.content(self.video_features(videos)), self.user_emb(users)], -1)


class CSMN(FeatureModel):
    """Context Sequence Memory Network (Park et al., CVPR 2017), one decoding step.

    Original: memory = image slot + the user's active vocabulary (top TF-IDF words of their past posts) + the
    words generated so far; the query attends over memory, the attended slots go through 1-D convolutions of
    widths 3, 4, 5 with max-pooling, and a softmax over the vocabulary emits the next word of the caption.
    Adapted: the image slot is a projection of the 2276-d features; context = the user's top-60 TF-IDF training
    hashtags; no sequence decoding (one step ranks all hashtags, so no generated-word memory); the query is the
    image slot. BPR by default; ``--loss softmax`` is its native loss.
    """

    hparams = (DIM, HParam('history', 60, "memory slots: the user's top TF-IDF training hashtags", positive=True))

    def __init__(self, data, dim=64, history=60):
        super().__init__(data, dim)
        self.lin_img = self.feature_linear(dim)
        self.mem_emb = nn.Embedding(data.num_hashtag + 1, dim, padding_idx=data.num_hashtag)
        nn.init.normal_(self.mem_emb.weight, std=0.1)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, w, padding=w // 2) for w in (3, 4, 5))
        self.lin_ctx = nn.Linear(3 * dim, dim)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))
        self.register_buffer('history', user_history(data, history, tfidf=True), persistent=False)

    def query(self, enc, users, videos):
        img = self.lin_img(self.video_features(videos))                          # [B, d]: image slot and query
        hist = self.history[users]                                         # [B, L]
        mem = torch.cat([img.unsqueeze(1), self.mem_emb(hist)], 1)         # [B, 1 + L, d]
        mask = torch.cat([hist.new_ones(len(hist), 1, dtype=torch.bool), hist < self.num_hashtag], 1)
        att = (mem @ img.unsqueeze(-1)).squeeze(-1) / math.sqrt(img.size(-1))
        att = torch.softmax(att.masked_fill(~mask, float('-inf')), 1)     # [B, 1 + L]
        ctx = (att.unsqueeze(-1) * mem)[:, 1:].transpose(1, 2)            # attended context slots [B, d, L]
        pooled = torch.cat([F.relu(conv(ctx)).amax(-1) for conv in self.convs], -1)
        return torch.tanh(img + self.lin_ctx(pooled))


class USHM(FeatureModel):
    """User-specific hashtag model (Veit et al., CVPR 2018): a three-way product of image, user and hashtag.

    Original: score = sum_k g_k(x) a_{u,k} e_{h,k} with g a CNN image embedding, a_u a learned user embedding,
    e_h a hashtag embedding, softmax over hashtags. Adapted: g = a 2-layer MLP on the 2276-d features (no CNN);
    BPR by default, ``--loss softmax`` is its native loss.
    """

    def __init__(self, data, dim=64):
        super().__init__(data, dim)
        self.g = nn.Sequential(self.feature_linear(dim), nn.ReLU(), nn.Linear(dim, dim))
        self.user_emb = nn.Embedding(data.num_user, dim)
        nn.init.normal_(self.user_emb.weight, mean=1.0, std=0.1)   # start near "no user effect"
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))

    def query(self, enc, users, videos):
        return self.g(self.video_features(videos)) * self.user_emb(users)


class GlobalPopularity(Recommender):
    """Floor: rank hashtags by how often they were used in training, the same for every user and video."""
    trainable = False
    losses = ()
    search = {}

    def __init__(self, data):
        super().__init__()
        self.num_hashtag = data.num_hashtag
        self.register_buffer('popularity', hashtag_popularity(data), persistent=False)

    def score(self, enc, users, videos, hashtags):
        return self.popularity[hashtags]


class UserPopularity(GlobalPopularity):
    """Floor: rank by the user's own training uses of each hashtag; ties (and unused ones) by global popularity."""

    def __init__(self, data):
        super().__init__(data)
        g = data.graph
        self.H = data.num_hashtag
        keys, counts = user_hashtag_counts(g, self.H)
        self.register_buffer('keys', keys, persistent=False)
        self.register_buffer('counts', counts, persistent=False)

    def score(self, enc, users, videos, hashtags):
        own = lookup_pairs(self.keys, self.counts, users, hashtags, self.H)
        pop = self.popularity[hashtags]
        return own + pop / (self.popularity.max() + 1)   # lexicographic: own count first, then global


TEXTS = ('auto', 'dense', 'tfidf')


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

    def new_post_similarities(self, model, videos):
        """[B, Vt] similarities of new posts, given as feature rows ``videos`` [B, F] to ``model`` (the Recommender
        holding this index): by their TF-IDF rows (``model.new_tfidf_rows``, given with ``new_posts_tfidf``) when the
        index compares TF-IDF rows, else by their feature rows."""
        if self.pool_tfidf is not None:
            return self.similarities(rows=model.new_tfidf_rows(len(videos)))
        return self.similarities(features=model.video_features(videos))

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


class SimilarPosts(Recommender):
    """The classic content baseline, "hashtags of the most similar earlier posts" (Mishne, AutoTag, WWW 2006;
    Zangerle, Gassler & Specht, SASWeb 2011): no gradient training.

    A post's content vector (its feature row; zero columns dropped) is compared by cosine with every training post;
    the ``k`` most similar vote for each of their hashtags with weight max(sim, 0) ** ``power`` (``NeighbourVotes``).
    Scored as ``mix`` * votes + log(1 + c_uh), c_uh the user's training count of h (``personal``; the registry's
    ``kNN``), or the votes alone (``kNN_content``). Ties, above all the hashtags with neither a vote nor a count
    (they all score 0), are broken by global training popularity, as the counts floor's are: a term
    ``TIE_BREAK`` * popularity / max popularity, which moves no other pair by more than ``TIE_BREAK``. Without it a
    post with few votes had its top 10 filled by arbitrary zero-score hashtags, counted against it by the metric.
    A new post is scored from its feature row like any model's.
    """
    TIE_BREAK = 1e-5
    trainable = False
    losses = ()
    hparams = (HParam('k', 50, 'kNN: how many of the most similar training posts vote', positive=True),
               HParam('mix', 1.0, "kNN: weight of the neighbours' votes against the user's log(1 + count)"),
               HParam('power', 1.0, 'kNN: a neighbour votes with its cosine similarity to this power'),
               HParam('text', 'auto', 'what posts are compared by: dense (the feature rows) | tfidf (the sparse TF-IDF '
                                      'rows an import writes) | auto (tfidf where the dataset has them)',
                      choices=TEXTS))
    search = {'k': [10, 25, 50, 100, 200], 'mix': [0.5, 1.0, 2.0, 4.0, 8.0], 'power': [1.0, 2.0]}

    def __init__(self, data, k=50, mix=1.0, power=1.0, text='auto', personal=True):
        super().__init__()
        if k < 1 or not mix > 0 or not power > 0:
            raise ValueError(f'kNN needs k >= 1, mix > 0 and power > 0 (got k={k}, mix={mix}, power={power})')
        self.num_hashtag, self.mix, self.personal = data.num_hashtag, mix, personal
        self.set_features(data.features)
        self.text = content_rows(data, text)
        self.index = NeighbourVotes(data, self.features, k, power, data.text_tfidf if self.text == 'tfidf' else None)
        self.reads_tfidf = self.text == 'tfidf'
        keys, counts = user_hashtag_counts(data.graph, self.num_hashtag)
        self.register_buffer('keys', keys, persistent=False)
        self.register_buffer('counts', counts, persistent=False)
        pop = hashtag_popularity(data)
        self.register_buffer('tie_break', self.TIE_BREAK * pop / pop.max().clamp(min=1), persistent=False)

    def score(self, enc, users, videos, hashtags):
        return self._score(users, videos, hashtags) + self.tie_break[hashtags]

    def _score(self, users, videos, hashtags):
        if videos.is_floating_point():   # new posts: their feature rows, or (text=tfidf) their TF-IDF rows
            sims = self.index.new_post_similarities(self, videos)
        else:
            sims = self.index.similarities(self.video_features(videos) if self.text == 'dense' else None, videos)
        s = torch.gather(self.index.votes(sims), 1, hashtags)
        if not self.personal:
            return s
        own = lookup_pairs(self.keys, self.counts, users, hashtags, self.num_hashtag)
        return self.mix * s + torch.log1p(own)
