"""The paper's four baselines (SPEC §5), adapted to (user, 2276-d video features, candidate hashtags): UTM, ConTagNet,
CSMN, USHM. Each builds a query vector from the user and the post and scores it against a learned vector and bias per
hashtag (``FeatureModel``), so ``score_all`` (full ranking, and their native full-softmax / BCE losses of
``train.py --loss``) is one matmul. User history comes from the training triples only. Each class declares its knobs
(``hparams``) and is registered by name in ``phr/models/registry.py``; the similar-posts baseline and the popularity
floors are in ``neighbours.py``.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from phr.core.base import DIM, HParam, Recommender
from phr.core.sparse import gather_rows


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

    def __init__(self, data, *, dim):
        super().__init__()
        self.num_user, self.num_hashtag = data.num_user, data.num_hashtag
        self.set_features(data.features)

    def query(self, enc, users, posts):
        """[B] users, [B] video ids or [B, F] feature rows -> [B, d] vector scored against hashtag vectors."""
        raise NotImplementedError

    def hashtag_vectors(self):
        return self.hashtag_emb.weight[:self.num_hashtag], self.hashtag_bias[:self.num_hashtag]

    def score(self, enc, users, posts, hashtags):
        q = self.query(enc, users, posts)
        e, b = self.hashtag_vectors()
        return (gather_rows(e, hashtags) @ q.unsqueeze(-1)).squeeze(-1) + b[hashtags]

    def score_all(self, enc, users, posts):
        e, b = self.hashtag_vectors()
        return self.query(enc, users, posts) @ e.T + b


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

    def __init__(self, data, *, dim, history):
        super().__init__(data, dim=dim)
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

    def query(self, enc, users, posts):
        hist = self.history[users]                                        # [B, L]
        n = (hist < self.num_hashtag).sum(1, keepdim=True).clamp(min=1)
        m = self.user_emb(users) + self.hist_emb(hist).sum(1) / n
        return self.lin_o(self.lin_x(self.video_features(posts)) * self.lin_m(m))


class ConTagNet(FeatureModel):
    """ConTagNet (Rawat & Kankanhalli, MM 2016): a content CNN and a user-context net, concatenated into one
    tag-score layer.

    Original: image CNN + a context branch over time and geo-location features, multi-label loss over tags.
    Adapted: content branch = a 2-layer MLP on the 2276-d features (no CNN); context = the user id embedding
    (no time or geo in this data); the shared tag-score layer = one vector + bias per hashtag over the
    concatenation. BPR by default (as the authors trained it); ``--loss bce`` is its native multi-label loss.
    """

    def __init__(self, data, *, dim):
        super().__init__(data, dim=dim)
        self.content = nn.Sequential(self.feature_linear(dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.user_emb = nn.Embedding(data.num_user, dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, 2 * dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))

    def query(self, enc, users, posts):
        return torch.cat([self.content(self.video_features(posts)), self.user_emb(users)], -1)


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

    def __init__(self, data, *, dim, history):
        super().__init__(data, dim=dim)
        self.lin_img = self.feature_linear(dim)
        self.mem_emb = nn.Embedding(data.num_hashtag + 1, dim, padding_idx=data.num_hashtag)
        nn.init.normal_(self.mem_emb.weight, std=0.1)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, w, padding=w // 2) for w in (3, 4, 5))
        self.lin_ctx = nn.Linear(3 * dim, dim)
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))
        self.register_buffer('history', user_history(data, history, tfidf=True), persistent=False)

    def query(self, enc, users, posts):
        img = self.lin_img(self.video_features(posts))                          # [B, d]: image slot and query
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

    def __init__(self, data, *, dim):
        super().__init__(data, dim=dim)
        self.g = nn.Sequential(self.feature_linear(dim), nn.ReLU(), nn.Linear(dim, dim))
        self.user_emb = nn.Embedding(data.num_user, dim)
        nn.init.normal_(self.user_emb.weight, mean=1.0, std=0.1)   # start near "no user effect"
        self.hashtag_emb = nn.Embedding(data.num_hashtag, dim)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.hashtag_bias = nn.Parameter(torch.zeros(data.num_hashtag))

    def query(self, enc, users, posts):
        return self.g(self.video_features(posts)) * self.user_emb(users)


