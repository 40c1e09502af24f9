"""GCN-PHR (Wei et al., ACM MM 2019) as the paper's Figure 2 draws it, and its faithful variants: the authors'
released architecture (``Net``), the homogeneous-graph ablation (``var1``) and GCN-PHR without attention
(``no_att``). The extension GCN-PHR+ (not the paper's) is in ``phr/models/plus.py``, the baselines in
``phr/models/baselines.py``, the interface in ``phr/core/base.py`` and the registry of names in
``phr/models/registry.py``.

Notation (SPEC §2): a training triple (u, v, h) = "u tagged v with h"; V(u, h) = videos u tagged with h;
p_v = LeakyReLU(W_t f_v + b) the video vector from its 2276-d features.
"""
import threading
import weakref
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, MessagePassing, SAGEConv
from torch_geometric.utils import scatter, softmax

from phr.core.base import DIM, TRAINING_SEARCH, HParam, Recommender
from phr.core.sparse import gather_rows, rows

AGGR = {'mean': 'mean', 'max': 'max', 'add': 'sum'}
SCORING_MODES = ('cat', 'fully_con')


def aggr_name(aggr):
    """``--aggr_mode`` -> PyG's name of the reduction, or a clear error."""
    if aggr not in AGGR:
        raise ValueError(f'unknown aggr_mode {aggr!r}; choose from {tuple(AGGR)}')
    return AGGR[aggr]


# ----------------------------------------------------------------------------------------------------------------
# the training graph as index tensors

class GraphIndex(NamedTuple):
    """Index tensors of the training graph for AggregationNet (built once by ``make_graph_index``).

    A pair p = (u, h) whose group V(u, h) holds one video needs no attention (a softmax over one element is 1):
    its video sum is that video's vector. Attention runs only over the triples of groups of two or more.
    """
    pair_user: torch.Tensor     # [P] distinct (user, hashtag) pairs
    pair_hashtag: torch.Tensor  # [P]
    single_pair: torch.Tensor   # [P1] pairs with exactly one video
    single_video: torch.Tensor  # [P1] that video
    multi_pair: torch.Tensor    # [Pm] pairs with two or more videos
    multi_edge: torch.Tensor    # [2, Nm] (video, index into multi_pair), grouped by pair
    triple_video: torch.Tensor  # [N] video of every triple (the ``no_att`` mean pooling)
    triple_pair: torch.Tensor   # [N] its pair
    inv_deg_user: torch.Tensor     # [U] 1 / number of pairs of each user (0 for none): the mean's divisor
    inv_deg_hashtag: torch.Tensor  # [H]


def make_graph_index(graph, video_index=None):
    """GraphIndex from a data_load.Graph; ``video_index`` [V] renumbers videos (e.g. into the graph's own videos)."""
    video = graph.triple_video if video_index is None else video_index[graph.triple_video]
    count = graph.pair_count
    single_triple = count[graph.triple_pair] == 1
    multi = count > 1
    compact = torch.cumsum(multi.long(), 0) - 1            # pair id -> index among multi pairs
    multi_triple = ~single_triple
    inv_deg = lambda idx, n: 1.0 / torch.bincount(idx, minlength=n).clamp(min=1).float()
    return GraphIndex(graph.pair_user, graph.pair_hashtag,
                      graph.triple_pair[single_triple], video[single_triple],
                      torch.nonzero(multi).squeeze(1),
                      torch.stack([video[multi_triple], compact[graph.triple_pair[multi_triple]]]),
                      video, graph.triple_pair,
                      inv_deg(graph.pair_user, graph.num_user), inv_deg(graph.pair_hashtag, graph.num_hashtag))



class VideoProjection(nn.Module):
    """p_v = LeakyReLU(W_t f_v + b): the only place the 2276-d features enter (videos receive no messages)."""

    def __init__(self, lin):
        super().__init__()
        self.lin = lin   # nn.Linear over the kept feature columns (Recommender.feature_linear)

    def forward(self, features):
        return F.leaky_relu(self.lin(features))


_WORKSPACES = threading.local()   # per thread: {Scorer: its reused evaluation workspace}


class Scorer(nn.Module):
    """Figure 2, right: score = <FC1([x_u; p_v]), FC2([x_u; x_h])>.

    ``cat``: each FC is an MLP (Linear, LeakyReLU, Linear); ``fully_con``: each is one Linear + LeakyReLU.
    The first Linear on [x_u; x_h] is split as W_u x_u + W_h x_h, so the hashtag part is computed once per
    hashtag (``prepare``) and not once per candidate.
    """

    def __init__(self, dim, mode='cat'):
        super().__init__()
        if mode not in SCORING_MODES:
            raise ValueError(f'unknown scoring_mode {mode!r}; choose from {SCORING_MODES}')
        self.mode = mode
        self.video_in = nn.Linear(2 * dim, dim)
        self.hashtag_user = nn.Linear(dim, dim)
        self.hashtag_tag = nn.Linear(dim, dim, bias=False)
        if mode == 'cat':
            self.video_out = nn.Linear(dim, dim)
            # no bias: b . uv is the same for every hashtag of a row, so a pairwise loss can never train it
            self.hashtag_out = nn.Linear(dim, dim, bias=False)

    EVAL_BLOCK_ELEMENTS = 1 << 20   # 4 MB of float32 per block of rows, so the [rows, C, d] block stays in cache

    def _workspace(self, n, like):
        """This thread's evaluation workspace of this scorer (``evaluation`` scores full-ranking blocks in several
        threads at once on CPU): kept between calls, freed with the thread or the scorer."""
        per_thread = getattr(_WORKSPACES, 'by_scorer', None)
        if per_thread is None:
            per_thread = _WORKSPACES.by_scorer = weakref.WeakKeyDictionary()
        ws = per_thread.get(self)
        if ws is None or ws.numel() < n or ws.dtype != like.dtype or ws.device != like.device:
            ws = per_thread[self] = torch.empty(n, dtype=like.dtype, device=like.device)
        return ws

    def prepare(self, hashtag):
        """Hashtag-side part of the first layer, for all hashtags at once: [H, d]."""
        return self.hashtag_tag(hashtag)

    def forward(self, x_user, x_video, hashtag_table, hashtags=None, base=None):
        # x_user [B, d], x_video [B, d], hashtag_table [H, d] (``prepare``), hashtags [B, C] -> scores [B, C], or
        # hashtags None: every hashtag of the table in id order (full ranking) -> [B, H]; ``base`` [B, C]: other terms
        # of the score, added (under full ranking without gradients: in place, by the per-user matmul itself, so the
        # [B, H] table is written once)
        uv = F.leaky_relu(self.video_in(torch.cat([x_user, x_video], -1)))
        if self.mode == 'cat':
            # <W_h uh, W_v uv + b> = <uh, W_h^T (W_v uv + b)>: the last hashtag layer folds into the video side,
            # so no [B, C, d] x [d, d] product is needed (same value; hashtag_out has no bias)
            uv = self.video_out(uv) @ self.hashtag_out.weight
        q = self.hashtag_user(x_user).unsqueeze(1)
        grad = torch.is_grad_enabled() and (hashtag_table.requires_grad or q.requires_grad)
        if hashtags is None:
            if not grad and len(uv) > 1:
                return self._score_every_hashtag(uv, q, hashtag_table, base)
            H = hashtag_table.size(0)
            hashtags = torch.arange(H, device=uv.device).expand(len(uv), H)
        if grad:
            # [B, C, d] rows by index_select (cheaper than 2-D advanced indexing), add and LeakyReLU in place
            uh = F.leaky_relu_(gather_rows(hashtag_table, hashtags).add_(q))
            s = (uh @ uv.unsqueeze(-1)).squeeze(-1)
            return s if base is None else s + base
        return self._score_no_grad(uv, q, hashtag_table, hashtags, base)

    def _score_no_grad(self, uv, q, hashtag_table, hashtags, base=None):
        """Evaluation: the same values, computed in blocks of rows whose [rows, C, d] tensor stays in cache, written
        into one workspace kept between calls (a fresh tensor per block costs more in page faults than the copy
        itself). On a GPU: one block."""
        B, C = hashtags.shape
        d = hashtag_table.size(1)
        block = B if hashtags.is_cuda else max(1, self.EVAL_BLOCK_ELEMENTS // (C * d))
        out = torch.empty(B, C, dtype=uv.dtype, device=uv.device)
        n_ws = min(block, B) * C * d   # a GPU's caching allocator already reuses memory: no workspace kept there
        ws = torch.empty(n_ws, dtype=hashtag_table.dtype, device=hashtag_table.device) if hashtags.is_cuda \
            else self._workspace(n_ws, hashtag_table)
        for s in range(0, B, block):
            n = min(block, B - s)
            uh = ws[:n * C * d].view(n, C, d)
            torch.index_select(hashtag_table, 0, hashtags[s:s + n].reshape(-1), out=uh.view(-1, d))
            F.leaky_relu_(uh.add_(q[s:s + n]))
            # the row-wise dot products as an in-place product and a sum: on CPU, cheaper than bmm's batched
            # matrix-vector product at this shape
            torch.sum(uh.mul_(uv[s:s + n].unsqueeze(1)), -1, out=out[s:s + n])
        return out if base is None else out.add_(base)

    def _score_every_hashtag(self, uv, q, hashtag_table, base=None):
        """Full ranking (every row's candidates are all H hashtags, in order): the hashtag side
        LeakyReLU(W_h x_h + W_u x_u) depends on the user only, so it is computed once per distinct user of the rows
        ([H, d]) and that user's rows are scored against it by one matmul. Same values as the row-by-row path up to
        float rounding (a matmul sums in another order). Runs of consecutive rows of one user share the pass
        (``evaluation.full_split`` holds rows grouped by user, so a run is all of a user's rows in the block).
        ``base``: the other terms of the score, [B, H]; the matmul adds into it in place (addmm) and returns it."""
        users, counts = torch.unique_consecutive(q[:, 0], dim=0, return_counts=True)
        H, d = hashtag_table.shape
        out = torch.empty(len(uv), H, dtype=uv.dtype, device=uv.device) if base is None else base
        ws = self._workspace(H * d, hashtag_table)[:H * d].view(H, d) if not hashtag_table.is_cuda else None
        start = 0
        for g, n in enumerate(counts.tolist()):
            uh = torch.add(hashtag_table, users[g], out=ws) if ws is not None else hashtag_table + users[g]
            F.leaky_relu_(uh)
            if base is None:
                torch.mm(uv[start:start + n], uh.T, out=out[start:start + n])
            else:
                out[start:start + n].addmm_(uv[start:start + n], uh.T)
            start += n
        return out


class GroupAttention(MessagePassing):
    r"""Attention-weighted sums of the videos behind each (user, hashtag) pair, two heads at once.

    .. math::
        s^k_p = \sum_{t \in p} \alpha^k_t p_{v_t}, \quad
        \alpha^k_t = \mathrm{softmax}_{t \in p}\big(a_k^\top \mathrm{LeakyReLU}(W^k_v p_{v_t} + W^k_c c^k_p + b^k)\big)

    Head 0 is the user side (condition c^0_p = the pair's hashtag: "an attention net conditioned on h"), head 1
    the hashtag side (c^1_p = the pair's user). Each head has its own weights; they run as one pass so the
    per-triple video vectors are read once. Edges run video -> pair, one per triple of a group of two or more
    videos, sorted by pair; the softmax is over each pair's group (``torch_geometric.utils.softmax``).
    """

    def __init__(self, dim):
        super().__init__(aggr='add', node_dim=0)
        self.dim = dim
        self.lin_video = nn.Linear(dim, 2 * dim, bias=False)   # [W^0_v; W^1_v]
        self.lin_cond = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim)])
        self.att = nn.Parameter(torch.empty(2, dim))            # a_0, a_1
        nn.init.uniform_(self.att, -dim ** -0.5, dim ** -0.5)   # nn.Linear(dim, 1)'s default range

    def forward(self, x_edge, cond_hashtag, cond_user, edge_index):
        """x_edge [Nm, d]: the video vector of every edge (gathered once per step, shared by all layers);
        cond_* [Pm, d]: conditions of the multi-video pairs. Returns [Pm, 2, d] (head 0 user side, 1 hashtag)."""
        key_e = self.lin_video(x_edge).view(-1, 2, self.dim)
        key_p = torch.stack([self.lin_cond[0](cond_hashtag), self.lin_cond[1](cond_user)], 1)
        return self.propagate(edge_index, x_e=x_edge, key_e=key_e, key=key_p, size=(None, cond_user.size(0)))

    def message(self, x_e, key_e, key_i, index, size_i):
        # in place where autograd allows: each fresh [Nm, 2, d] tensor costs more in page faults than in arithmetic
        e = (F.leaky_relu_(key_i.add_(key_e), 0.2) * self.att).sum(-1)   # [Nm, 2]: a_k . h_k
        alpha = softmax(e, index, num_nodes=size_i)                        # over each pair's videos, per head
        return alpha.unsqueeze(-1) * x_e.unsqueeze(1)                      # [Nm, 2, d]

    def aggregate(self, inputs, index, dim_size):
        # the sum over each pair's edges; index_add's backward is a row gather (index_select), cheaper on CPU than
        # the gather over a broadcast index that the generic scatter-sum needs
        return inputs.new_zeros((dim_size,) + inputs.shape[1:]).index_add_(0, index, inputs)


class VideoContext(NamedTuple):
    """What every layer needs from the video vectors, computed once per propagation (videos get no messages, so
    their vectors are the same in every layer)."""
    x_edge: Optional[torch.Tensor]       # [Nm, d] video of every multi-video triple (attention)
    s_pair: Optional[torch.Tensor]       # [P, d] video sum of pairs with one video (0 elsewhere), or the no_att mean
    s_user: Optional[torch.Tensor]       # [U, d] sum over each user's pairs of the layer-independent part (sum/mean)
    s_hashtag: Optional[torch.Tensor]    # [H, d]


def video_context(x_video, g, aggr, attention, num_user, num_hashtag):
    d = x_video.size(1)
    if attention:
        s_pair = x_video.new_zeros(len(g.pair_user), d).index_copy(0, g.single_pair, rows(x_video, g.single_video))
        x_edge = rows(x_video, g.multi_edge[0])
    else:   # no_att: every group's plain mean, the same in every layer
        s_pair = scatter(rows(x_video, g.triple_video), g.triple_pair, 0, len(g.pair_user), reduce='mean')
        x_edge = None
    if aggr == 'max':
        return VideoContext(x_edge, s_pair, None, None)
    # sum / mean are linear: the single-video (or no_att) part of each user's / hashtag's sum is summed once here
    return VideoContext(x_edge, None, scatter(s_pair, g.pair_user, 0, num_user, reduce='sum'),
                        scatter(s_pair, g.pair_hashtag, 0, num_hashtag, reduce='sum'))


class AggregationNet(nn.Module):
    """One layer of Figure 2's aggregation net, for users and hashtags at once.

    user u:    m_u = AGG_{h in H(u)} x_h + AGG_{h in H(u)} s_{(u,h)},  s = GroupAttention conditioned on h
    hashtag h: m_h = AGG_{u in U(h)} x_u + AGG_{u in U(h)} s'_{(u,h)}, s' = GroupAttention conditioned on u
    x' = LeakyReLU(W m + W_self x). AGG = ``aggr`` (mean | max | add). ``attention=False`` (ablation ``no_att``)
    replaces the attention by the plain mean of each group. The self term keeps the node's own id embedding,
    which the figure leaves implicit (the authors' released GAT layers add self-loops for the same reason).

    For mean and add, AGG(a) + AGG(b) over the same pairs is computed as one sum (a + b) / deg, with the part that
    does not change between layers (groups of one video; all groups for no_att) summed once per propagation.
    """

    def __init__(self, dim, aggr='mean', attention=True):
        super().__init__()
        self.aggr = aggr_name(aggr)
        self.attention = attention
        if attention:
            self.att = GroupAttention(dim)
        self.lin_user = nn.Linear(dim, dim)
        self.self_user = nn.Linear(dim, dim, bias=False)
        self.lin_hashtag = nn.Linear(dim, dim)
        self.self_hashtag = nn.Linear(dim, dim, bias=False)

    def forward(self, x_user, x_hashtag, x_video, g, ctx=None):
        U, H = x_user.size(0), x_hashtag.size(0)
        if ctx is None:
            ctx = video_context(x_video, g, self.aggr, self.attention, U, H)
        tags_of_pairs = rows(x_hashtag, g.pair_hashtag)   # [P, d]
        users_of_pairs = rows(x_user, g.pair_user)        # [P, d]
        if self.attention:
            s_multi = self.att(ctx.x_edge, rows(tags_of_pairs, g.multi_pair), rows(users_of_pairs, g.multi_pair),
                               g.multi_edge)
        if self.aggr == 'max':
            s_user = s_hashtag = ctx.s_pair
            if self.attention:
                s_user = ctx.s_pair.index_copy(0, g.multi_pair, s_multi[:, 0])
                s_hashtag = ctx.s_pair.index_copy(0, g.multi_pair, s_multi[:, 1])
            m_user = (scatter(tags_of_pairs, g.pair_user, 0, U, reduce='max')
                      + scatter(s_user, g.pair_user, 0, U, reduce='max'))
            m_hashtag = (scatter(users_of_pairs, g.pair_hashtag, 0, H, reduce='max')
                         + scatter(s_hashtag, g.pair_hashtag, 0, H, reduce='max'))
        else:
            m_user = scatter(tags_of_pairs, g.pair_user, 0, U, reduce='sum') + ctx.s_user
            m_hashtag = scatter(users_of_pairs, g.pair_hashtag, 0, H, reduce='sum') + ctx.s_hashtag
            if self.attention:
                m_user = m_user.index_add(0, g.pair_user[g.multi_pair], s_multi[:, 0])
                m_hashtag = m_hashtag.index_add(0, g.pair_hashtag[g.multi_pair], s_multi[:, 1])
            if self.aggr == 'mean':
                m_user = m_user * g.inv_deg_user.unsqueeze(1)
                m_hashtag = m_hashtag * g.inv_deg_hashtag.unsqueeze(1)
        return (F.leaky_relu(self.lin_user(m_user) + self.self_user(x_user)),
                F.leaky_relu(self.lin_hashtag(m_hashtag) + self.self_hashtag(x_hashtag)))


# the knobs every graph model shares (train.py flags --dim_latent, --scoring_mode, --num_layers, --aggr_mode)
SCORING = HParam('scoring_mode', 'cat', 'cat: [user; x] through an MLP | fully_con: one fully connected layer',
                 choices=SCORING_MODES)
LAYERS = HParam('num_layers', 2, 'stacked aggregation layers', positive=True)
AGGREGATION = HParam('aggr', 'mean', 'aggregation of neighbour messages (add = sum)', choices=tuple(AGGR),
                     flag='aggr_mode')
GRAPH_SEARCH = dict(TRAINING_SEARCH, num_layers=[1, 2], aggr_mode=['mean', 'add'], scoring_mode=['cat', 'fully_con'])


class GraphModel(Recommender):
    """What the graph models share: id embeddings, the video projection, the scorer, graph buffers."""
    hparams = (DIM, SCORING)

    def __init__(self, data, *, dim, scoring_mode):
        super().__init__()
        self.num_user, self.num_hashtag, self.num_video = data.num_user, data.num_hashtag, data.num_video
        self.dim = dim
        # features and graph are data, not weights: buffers that move with .to(device) but stay out of checkpoints
        self.set_features(data.features)
        # propagation only needs the videos of the training graph: their features, contiguous, gathered once
        graph_videos = torch.unique(data.graph.triple_video)
        self.register_buffer('graph_features', self.features[graph_videos], persistent=False)
        renumber = torch.full((self.num_video,), -1, dtype=torch.long)
        renumber[graph_videos] = torch.arange(len(graph_videos))
        for name, t in make_graph_index(data.graph, renumber)._asdict().items():
            self.register_buffer(f'g_{name}', t, persistent=False)
        self.user_emb = nn.Embedding(self.num_user, dim)
        self.hashtag_emb = nn.Embedding(self.num_hashtag, dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.hashtag_emb.weight, std=0.1)
        self.project = VideoProjection(self.feature_linear(dim))
        self.scorer = Scorer(dim, scoring_mode)

    @property
    def g(self):
        """The training graph on the model's device (buffers); videos numbered among the graph's own videos."""
        return GraphIndex(*(getattr(self, f'g_{name}') for name in GraphIndex._fields))

    def propagate(self, x_user, x_hashtag, x_video):
        raise NotImplementedError

    def encode(self):
        x_user, x_hashtag = self.propagate(self.user_emb.weight, self.hashtag_emb.weight,
                                           self.project(self.graph_features))   # [Vg, d]
        return {'user': x_user, 'hashtag': x_hashtag, 'hashtag_part': self.scorer.prepare(x_hashtag)}

    def score(self, enc, users, posts, hashtags):
        x_video = self.project(self.video_features(posts))   # p_v of the batch's posts (val/test/new ones too)
        return self.scorer(enc['user'][users], x_video, enc['hashtag_part'], hashtags)

    def score_all(self, enc, users, posts):
        return self.score(enc, users, posts, None)


class GCNPHR(GraphModel):
    """The paper's model (Figure 2): ``num_layers`` AggregationNet layers; ``attention=False`` = ablation no_att."""
    hparams = (DIM, LAYERS, AGGREGATION, SCORING)
    search = GRAPH_SEARCH

    def __init__(self, data, *, dim, num_layers, aggr, scoring_mode, attention=True):
        super().__init__(data, dim=dim, scoring_mode=scoring_mode)
        self.layers = nn.ModuleList(AggregationNet(dim, aggr, attention) for _ in range(num_layers))

    def layer_outputs(self, x_user, x_hashtag, x_video):
        """Each layer's (user, hashtag) vectors in turn; the video context is computed once for all layers."""
        g = self.g
        first = self.layers[0]
        ctx = video_context(x_video, g, first.aggr, first.attention, x_user.size(0), x_hashtag.size(0))
        for layer in self.layers:
            x_user, x_hashtag = layer(x_user, x_hashtag, x_video, g, ctx)
            yield x_user, x_hashtag

    def propagate(self, x_user, x_hashtag, x_video):
        for x_user, x_hashtag in self.layer_outputs(x_user, x_hashtag, x_video):
            pass
        return x_user, x_hashtag



class HomogeneousNet(GraphModel):
    """Ablation ``var1`` (named in the authors' script, never published): one untyped edge set.

    Users, hashtags and videos are nodes of one graph whose edges are u-v, h-v and u-h from the training
    triples, both directions, no types; each layer is x' = LeakyReLU(SAGE_aggr(x)) over it. No attention.
    """
    hparams = (DIM, LAYERS, AGGREGATION, SCORING)
    search = GRAPH_SEARCH

    def __init__(self, data, *, dim, num_layers, aggr, scoring_mode):
        super().__init__(data, dim=dim, scoring_mode=scoring_mode)
        U, H = self.num_user, self.num_hashtag
        g = data.graph
        pairs = torch.cat([
            torch.stack([g.triple_user, U + H + self.g_triple_video]),
            torch.stack([U + g.triple_hashtag, U + H + self.g_triple_video]),
            torch.stack([g.pair_user, U + g.pair_hashtag])], 1)
        edges = torch.unique(torch.cat([pairs, pairs.flip(0)], 1), dim=1)
        self.register_buffer('edge_index', edges, persistent=False)
        self.convs = nn.ModuleList(SAGEConv(dim, dim, aggr=aggr_name(aggr)) for _ in range(num_layers))

    def propagate(self, x_user, x_hashtag, x_video):
        U, H = self.num_user, self.num_hashtag
        x = torch.cat([x_user, x_hashtag, x_video])
        for conv in self.convs:
            x = F.leaky_relu(conv(x, self.edge_index))
        return x[:U], x[U:U + H]


class ReleasedNet(GraphModel):
    """The authors' released ``model.py`` architecture (``Net``), with the SPEC §3 defects fixed.

    Per block: GAT over video -> user and video -> hashtag edges (plus self-loops), then a GraphSAGE layer over
    user <-> hashtag edges, LeakyReLU after each; ``num_layers`` blocks (their last commit used 2). Node vectors
    start L2-normalised as in their code. Fixed: id embeddings are trained parameters, ``--aggr_mode`` reaches the
    SAGE aggregation (it never reached any in their code), ``--scoring_mode`` is honoured.
    """
    hparams = (DIM, LAYERS, AGGREGATION, SCORING)
    search = GRAPH_SEARCH

    def __init__(self, data, *, dim, num_layers, aggr, scoring_mode):
        super().__init__(data, dim=dim, scoring_mode=scoring_mode)
        U, H = self.num_user, self.num_hashtag
        g = data.graph
        vid = U + H + self.g_triple_video   # videos numbered among the graph's own
        v_to_uh = torch.unique(torch.cat([torch.stack([vid, g.triple_user]),
                                          torch.stack([vid, U + g.triple_hashtag])], 1), dim=1)
        uh = torch.stack([g.pair_user, U + g.pair_hashtag])
        self.register_buffer('v_uh_edge_index', v_to_uh, persistent=False)
        self.register_buffer('uh_edge_index', torch.cat([uh, uh.flip(0)], 1), persistent=False)
        self.gats = nn.ModuleList(GATConv(dim, dim, heads=1, add_self_loops=True) for _ in range(num_layers))
        self.sages = nn.ModuleList(SAGEConv(dim, dim, aggr=aggr_name(aggr)) for _ in range(num_layers))

    def propagate(self, x_user, x_hashtag, x_video):
        U, H = self.num_user, self.num_hashtag
        x = F.normalize(torch.cat([x_user, x_hashtag, x_video]))
        for gat, sage in zip(self.gats, self.sages):
            x = F.leaky_relu(gat(x, self.v_uh_edge_index))
            x = F.leaky_relu(sage(x, self.uh_edge_index))
        return x[:U], x[U:U + H]
