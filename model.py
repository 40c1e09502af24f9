"""GCN-PHR (Wei et al., ACM MM 2019) as the paper's Figure 2 draws it, the authors' released variant, two ablations;
the model interface and the registry that every model of the suite (baselines.py too) goes through.

Every model has the same two-step interface (``Recommender``):
    enc = model.encode()                                # propagate once: a dict of node tables
    scores = model.score(enc, users, videos, hashtags)  # [B] users, [B] video ids or [B, F] feature rows,
                                                        # [B, C] hashtags -> [B, C]
so training scores (pos, neg) pairs and evaluation scores 1,000+ candidates per row from one propagation, and a
new post (not in the dataset) is scored from its feature row. All ids are local: users [0, U), hashtags [0, H),
videos [0, V).

A model is one class and one ``register`` line: the registry gives train.py its ``--model_name`` choices, builds
models from flags or from a checkpoint's ``model_args`` (``load_checkpoint``), and gives the scripts their labels.

Notation (SPEC §2): a training triple (u, v, h) = "u tagged v with h"; V(u, h) = videos u tagged with h;
p_v = LeakyReLU(W_t f_v + b) the video vector from its 2276-d features.
"""
import inspect
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, MessagePassing, SAGEConv
from torch_geometric.utils import scatter, softmax

AGGR = {'mean': 'mean', 'max': 'max', 'add': 'sum'}
SCORING_MODES = ('cat', 'fully_con')


def aggr_name(aggr):
    """``--aggr_mode`` -> PyG's name of the reduction, or a clear error."""
    if aggr not in AGGR:
        raise ValueError(f'unknown aggr_mode {aggr!r}; choose from {tuple(AGGR)}')
    return AGGR[aggr]


# ----------------------------------------------------------------------------------------------------------------
# the interface and the registry

class CheckpointError(ValueError):
    """A checkpoint that cannot be turned into a model; the message names the file and the problem."""


class Recommender(nn.Module):
    """What every model of the suite is (as RecBole's ``AbstractRecommender``).

    Subclasses define ``encode`` and ``score``; ``forward`` is defined here once. Class attributes say what a model
    can do: ``trainable`` (False: evaluated as built, e.g. the popularity floors) and ``losses`` (the training
    losses of train.py it supports: ``bpr`` scores candidate pairs; ``softmax`` / ``bce`` need ``score_all``).
    Feature tables and graphs are non-persistent buffers (data, not weights): a checkpoint holds only parameters.
    """
    trainable = True
    losses = ('bpr',)

    def encode(self):
        """Propagate once: a dict of whatever ``score`` needs (node tables), shared by every batch of a pass."""
        return {}

    def score(self, enc, users, videos, hashtags):
        """users [B] ids, videos [B] ids or [B, F] feature rows of new posts, hashtags [B, C] ids -> [B, C]."""
        raise NotImplementedError

    def forward(self, users, videos, hashtags):
        return self.score(self.encode(), users, videos, hashtags)

    drop_zero_feature_columns = True   # class switch, for the test that this changes no score

    def set_features(self, features):
        """Keep the [V, F] feature table as a (non-persistent) buffer, without the columns that are zero for every
        post: imported posts usually lack the visual and acoustic blocks, and those all-zero columns would only
        multiply zeros in every projection (exact: a zero column adds nothing to any product)."""
        self.feature_width = features.size(1)
        used = features.ne(0).any(0)
        cols = None if used.all() or not self.drop_zero_feature_columns else torch.nonzero(used).squeeze(1)
        self.register_buffer('feature_cols', cols, persistent=False)
        self.register_buffer('features', features if cols is None else features[:, cols].contiguous(),
                             persistent=False)

    def feature_linear(self, dim, bias=True):
        """nn.Linear reading the kept feature columns. It is initialised as a Linear over all F columns and then
        loses the weights of the dropped ones, so the initial values (and the random stream) are those of
        ``nn.Linear(F, dim)``."""
        lin = nn.Linear(self.feature_width, dim, bias=bias)
        if self.feature_cols is not None:
            lin.weight = nn.Parameter(lin.weight.detach()[:, self.feature_cols].clone())
            lin.in_features = len(self.feature_cols)
        return lin

    def video_features(self, videos):
        """[B] video ids -> their rows of the feature table; [B, F] float rows (new posts, all F columns) -> the
        kept columns of those rows."""
        if videos.is_floating_point():
            if videos.dim() != 2 or videos.size(1) != self.feature_width:
                raise ValueError(f'feature rows of shape {list(videos.shape)}; this model takes [B, '
                                 f'{self.feature_width}]')
            if self.feature_cols is not None:
                videos = videos.index_select(1, self.feature_cols.to(videos.device))
            return videos.to(self.features.dtype)
        return self.features.index_select(0, videos)

    @torch.no_grad()
    def recommend(self, users, videos, k=10, enc=None):
        """Top-k hashtags over all hashtags for each (user, video or feature row): (ids [B, k], scores [B, k])."""
        enc = self.encode() if enc is None else enc
        H = self.num_hashtag
        hashtags = torch.arange(H, device=users.device).expand(len(users), H)
        top = torch.topk(self.score(enc, users, videos, hashtags), min(k, H), dim=1)
        return top.indices, top.values


@dataclass(frozen=True)
class ModelSpec:
    cls: type
    label: str                                  # the name in tables (scripts/tune.py)
    fixed: dict = field(default_factory=dict)   # constructor arguments the name fixes (no_att: attention=False)

    def hparams(self):
        """Constructor arguments a user can set (those of ``cls`` besides ``data`` and the fixed ones)."""
        params = inspect.signature(self.cls.__init__).parameters
        return [n for n in params if n not in ('self', 'data') and n not in self.fixed]


MODELS = {}   # model_name -> ModelSpec, filled by ``register`` below and in baselines.py


def register(name, cls, label=None, **fixed):
    """Add a model to the registry: ``--model_name name`` builds ``cls(data, **hparams, **fixed)``."""
    MODELS[name] = ModelSpec(cls, label or name, fixed)
    return cls


def model_args(name, hparams):
    """The constructor arguments of model ``name`` taken from a dict of hyperparameters (extra keys ignored)."""
    spec = get_spec(name)
    return {k: hparams[k] for k in spec.hparams() if k in hparams}


def get_spec(name):
    if name not in MODELS:
        raise ValueError(f'unknown model_name {name!r}; choose from {tuple(MODELS)}')
    return MODELS[name]


def build_model(name, data, **hparams):
    """A model by its registry name; ``hparams`` may hold more keys than the model takes (they are ignored)."""
    spec = get_spec(name)
    return spec.cls(data, **model_args(name, hparams), **spec.fixed)


def checkpoint_model_args(name, hparams):
    """What a checkpoint stores to rebuild the model (nanoGPT's ``model_args``): name and constructor arguments."""
    return {'model_name': name, 'model_args': model_args(name, hparams)}


def read_checkpoint(path, device='cpu'):
    """torch.load(weights_only=True) of a checkpoint written by train.py, with one clear error per failure."""
    if not os.path.exists(path):
        raise CheckpointError(f'{path}: no such checkpoint')
    if os.path.isdir(path):
        raise CheckpointError(f'{path}: a folder, not a checkpoint file')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file, not a checkpoint')
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated, or not written by torch.save)')
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f'{path}: holds objects other than tensors and plain values (not a checkpoint written '
                              f'by train.py); it is not unpickled, since that could run code stored in it') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated or not written by torch.save: '
                              f'{first})') from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        raise CheckpointError(f'{path}: no model weights in it (not a checkpoint written by train.py)')
    return ckpt


def load_checkpoint(path, data, device='cpu'):
    """Rebuild a model from a checkpoint's own ``model_name`` / ``model_args`` and load its weights.

    Returns (model on ``device`` in eval mode, the checkpoint dict). Checkpoints written before ``model_args``
    existed are rebuilt from their run config. Every problem is a ``CheckpointError`` naming the file.
    """
    ckpt = read_checkpoint(path, device)
    name, args = ckpt.get('model_name'), ckpt.get('model_args')
    if name is None or args is None:   # older checkpoints: the run config holds the flags
        config = ckpt.get('config') if isinstance(ckpt.get('config'), dict) else {}
        if 'model_name' not in config:
            raise CheckpointError(f'{path}: no model_name / model_args in it (not a checkpoint written by train.py)')
        name = config['model_name']
        args = model_args(name, hparams_from_flags(config)) if name in MODELS else {}
    if name not in MODELS:
        raise CheckpointError(f'{path}: model {name!r} is not one of this suite\'s models {tuple(MODELS)}')
    if not isinstance(args, dict):
        raise CheckpointError(f'{path}: model_args is not a dict')
    try:
        model = build_model(name, data, **args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'{path}: its model_args {args} do not build {name}: {e}') from None
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as e:
        msg = ' '.join(str(e).split())
        trained_on = (ckpt.get('config') or {}).get('data_path')
        raise CheckpointError(f'{path} does not fit {getattr(data, "path", "this dataset")} '
                              f'({name}, {args}; trained on {trained_on}): {msg[:300]}') from None
    return model.to(device).eval(), ckpt


def resolve_device(name):
    """One device string: 'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:N'. ValueError with a clear message."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name} asked for, but this PyTorch sees no CUDA device')
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--device {name}: this suite runs on cpu or cuda')
    return device


def hparams_from_flags(flags):
    """train.py's flag names -> constructor argument names (a dict of flags, e.g. vars(args) or a saved config)."""
    rename = {'dim_latent': 'dim', 'aggr_mode': 'aggr'}
    return {rename.get(k, k): v for k, v in flags.items()}


# ----------------------------------------------------------------------------------------------------------------
# GCN-PHR and its variants

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


def rows(x, index):
    """x[index] for a 1-D index. index_select copies whole rows and its backward is index_add, both cheaper on CPU
    than advanced indexing (aten::index / index_put_)."""
    return x.index_select(0, index)


def gather_rows(table, index):
    """table[index] for a 2-D (or any) index: [*index.shape, d], via index_select on the flattened index."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.size(-1))


def sorted_lookup(keys, values, query):
    """values[i] where keys[i] == query (keys sorted ascending), 0 where query is not among keys: [*query.shape]."""
    pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[pos] == query, values[pos], torch.zeros((), dtype=values.dtype, device=query.device))


class VideoProjection(nn.Module):
    """p_v = LeakyReLU(W_t f_v + b): the only place the 2276-d features enter (videos receive no messages)."""

    def __init__(self, lin):
        super().__init__()
        self.lin = lin   # nn.Linear over the kept feature columns (Recommender.feature_linear)

    def forward(self, features):
        return F.leaky_relu(self.lin(features))


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
        ws = getattr(self, '_ws', None)
        if ws is None or ws.numel() < n or ws.dtype != like.dtype or ws.device != like.device:
            ws = self._ws = torch.empty(n, dtype=like.dtype, device=like.device)
        return ws

    def prepare(self, hashtag):
        """Hashtag-side part of the first layer, for all hashtags at once: [H, d]."""
        return self.hashtag_tag(hashtag)

    def forward(self, x_user, x_video, hashtag_table, hashtags):
        # x_user [B, d], x_video [B, d], hashtag_table [H, d] (``prepare``), hashtags [B, C] -> scores [B, C]
        uv = F.leaky_relu(self.video_in(torch.cat([x_user, x_video], -1)))
        if self.mode == 'cat':
            # <W_h uh, W_v uv + b> = <uh, W_h^T (W_v uv + b)>: the last hashtag layer folds into the video side,
            # so no [B, C, d] x [d, d] product is needed (same value; hashtag_out has no bias)
            uv = self.video_out(uv) @ self.hashtag_out.weight
        q = self.hashtag_user(x_user).unsqueeze(1)
        if torch.is_grad_enabled() and (hashtag_table.requires_grad or q.requires_grad):
            # [B, C, d] rows by index_select (cheaper than 2-D advanced indexing), add and LeakyReLU in place
            uh = F.leaky_relu_(gather_rows(hashtag_table, hashtags).add_(q))
            return (uh @ uv.unsqueeze(-1)).squeeze(-1)
        return self._score_no_grad(uv, q, hashtag_table, hashtags)

    def _score_no_grad(self, uv, q, hashtag_table, hashtags):
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


class GraphModel(Recommender):
    """What the graph models share: id embeddings, the video projection, the scorer, graph buffers."""

    def __init__(self, data, dim=64, scoring_mode='cat'):
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

    def score(self, enc, users, videos, hashtags):
        x_video = self.project(self.video_features(videos))   # p_v of the batch's posts (val/test/new ones too)
        return self.scorer(enc['user'][users], x_video, enc['hashtag_part'], hashtags)


class GCNPHR(GraphModel):
    """The paper's model (Figure 2): ``num_layers`` AggregationNet layers; ``attention=False`` = ablation no_att."""

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat', attention=True):
        super().__init__(data, dim, scoring_mode)
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


CONTENT_NETS = ('linear', 'mlp')
COUNT_GATES = ('none', 'post', 'pair')


class GCNPHRPlus(GCNPHR):
    r"""**Not the paper's model**: GCN-PHR plus what a trained GCN-PHR loses (README, "Beyond the paper").

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

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat', attention=True,
                 identity=True, counts=True, content=True, count_weight=1.0, content_net='linear', count_gate='none'):
        super().__init__(data, dim, num_layers, aggr, scoring_mode, attention)
        self.identity, self.counts, self.content = bool(identity), bool(counts), bool(content)
        if content_net not in CONTENT_NETS:
            raise ValueError(f'content_net {content_net!r}: choose from {CONTENT_NETS}')
        if count_gate not in COUNT_GATES:
            raise ValueError(f'count_gate {count_gate!r}: choose from {COUNT_GATES}')
        self.content_net, self.count_gate = content_net, (count_gate if self.counts else 'none')
        if self.identity:
            self.hashtag_bias = nn.Parameter(torch.zeros(self.num_hashtag))
        if self.counts:
            g = data.graph
            # (user, hashtag) keys of the training pairs: sorted, as the graph's pairs are grouped by user, then hashtag
            self.register_buffer('count_keys', g.pair_user * self.num_hashtag + g.pair_hashtag, persistent=False)
            self.register_buffer('counts_uh', g.pair_count.float(), persistent=False)
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
        count = sorted_lookup(self.count_keys, self.counts_uh, users.unsqueeze(1) * self.num_hashtag + hashtags)
        if videos is not None and not videos.is_floating_point():
            own = torch.ones((), device=count.device).expand(len(self.train_vh_keys))
            count = count - sorted_lookup(self.train_vh_keys, own, videos.unsqueeze(1) * self.num_hashtag + hashtags)
        return torch.log1p(count)

    def score_parts(self, enc, users, videos, hashtags):
        """(every term but the count term, log(1 + c_uh) or None without ``counts``): score = a + w * b."""
        feats = self.video_features(videos)
        p_v = self.project(feats)
        s = self.scorer(enc['user'][users], p_v, enc['hashtag_part'], hashtags)
        if self.identity:
            e_u = self.user_emb(users).unsqueeze(-1)                               # [B, d, 1]
            s = s + self.hashtag_bias[hashtags] + (self.hashtag_emb(hashtags) @ e_u).squeeze(-1)
        if self.content:
            q = self.content_video(feats if self.content_net == 'mlp' else p_v).unsqueeze(-1)   # [B, d, 1]
            s = s + (self.content_hashtag(hashtags) @ q).squeeze(-1)
        if not self.counts:
            return s, None
        log_count = self.log_count(users, hashtags, videos)
        if self.count_gate != 'none':
            logit = self.gate_video(p_v) + (self.gate_user(p_v) * self.user_emb(users)).sum(-1, keepdim=True)
            if self.count_gate == 'pair':                                          # [B, 1] -> [B, C]
                logit = logit + (self.gate_hashtag(hashtags) @ self.gate_hashtag_map(p_v).unsqueeze(-1)).squeeze(-1)
            log_count = log_count * (2 * torch.sigmoid(logit))
        return s, log_count

    def score(self, enc, users, videos, hashtags):
        s, log_count = self.score_parts(enc, users, videos, hashtags)
        # the count term last: train.calibrate_count_weight scores every factor of w from one score_parts call
        return s if log_count is None else s + self.count_weight * log_count


class HomogeneousNet(GraphModel):
    """Ablation ``var1`` (named in the authors' script, never published): one untyped edge set.

    Users, hashtags and videos are nodes of one graph whose edges are u-v, h-v and u-h from the training
    triples, both directions, no types; each layer is x' = LeakyReLU(SAGE_aggr(x)) over it. No attention.
    """

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat'):
        super().__init__(data, dim, scoring_mode)
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

    def __init__(self, data, dim=64, num_layers=2, aggr='mean', scoring_mode='cat'):
        super().__init__(data, dim, scoring_mode)
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


# ----------------------------------------------------------------------------------------------------------------
# the registry: one line per model (the baselines and floors register in baselines.py)

register('GCN_PHR', GCNPHR, 'GCN-PHR (paper, Fig. 2)')
register('Net', ReleasedNet, "authors' released Net (fixed)")
register('var1', HomogeneousNet, 'homogeneous graph (var1)')
register('no_att', GCNPHR, 'GCN-PHR w/o attention', attention=False)
register('GCN_PHR_plus', GCNPHRPlus, 'GCN-PHR+ (extension: identity, counts, content; not the paper)')

import baselines  # noqa: E402,F401  (registers the baselines and floors: the registry is whole once model is imported)
