"""What every model of the suite is: the ``Recommender`` interface, the ``HParam`` declaration of a model's knobs,
and the tensor helpers the models share. Nothing here knows any model by name (the registry is ``registry.py``).

Every model has the same two-step interface:
    enc = model.encode()                                # propagate once: a dict of node tables
    scores = model.score(enc, users, videos, hashtags)  # [B] users, [B] video ids or [B, F] feature rows,
                                                        # [B, C] hashtags -> [B, C]
so training scores (pos, neg) pairs and evaluation scores 1,000+ candidates per row from one propagation, and a
new post (not in the dataset) is scored from its feature row. All ids are local: users [0, U), hashtags [0, H),
videos [0, V).

A model declares what it is next to its code (as RecBole's model + properties file): ``hparams``, its constructor
knobs with defaults, types and choices (train.py builds its CLI from them); ``search``, the grid the sweep draws its
configurations from (keyed by train.py flag); ``ablations``, the switches the sweep turns off one at a time.
"""
import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass(frozen=True)
class HParam:
    """One knob of a model: constructor argument ``name``, set by the train.py flag ``--flag`` (default: name)."""
    name: str
    default: object
    help: str = ''
    choices: Optional[tuple] = None
    flag: Optional[str] = None
    positive: bool = False   # train.py refuses a value <= 0 before any data is read

    @property
    def cli(self):
        return self.flag or self.name

    @property
    def type(self):
        return type(self.default)


# the knob every learned model has (train.py --dim_latent)
DIM = HParam('dim', 64, 'size of every node vector', flag='dim_latent', positive=True)

# the training knobs every trainable model is searched over (train.py flags); decay_embeddings: whether the weight
# decay reaches the id embeddings and biases too (off in the authors' code)
TRAINING_SEARCH = {'l_r': [1e-3, 3e-3, 1e-2], 'weight_decay': [0.0, 1e-3, 0.1], 'decay_embeddings': [False, True]}


class Recommender(nn.Module):
    """What every model of the suite is (as RecBole's ``AbstractRecommender``).

    Subclasses define ``encode`` and ``score``; ``forward`` is defined here once. Class attributes say what a model
    can do: ``trainable`` (False: evaluated as built, e.g. the popularity floors) and ``losses`` (the training
    losses of train.py it supports: ``bpr`` scores candidate pairs; ``softmax`` / ``bce`` need ``score_all``), and
    what it can be set to (``hparams``, ``search``, ``ablations``: see the module docstring).
    Feature tables and graphs are non-persistent buffers (data, not weights): a checkpoint holds only parameters.
    """
    trainable = True
    losses = ('bpr',)
    hparams = ()                    # tuple of HParam: the constructor's knobs besides ``data``
    search = dict(TRAINING_SEARCH)  # flag -> values drawn by the sweep (scripts/tune.py)
    ablations = ()                  # boolean knobs the sweep switches off one at a time after the seeds

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

    # a model that compares posts by their sparse TF-IDF rows (kNN / TagMix with text=tfidf) sets this True: a new
    # post then needs its TF-IDF row too, given with ``new_posts_tfidf`` around the call that scores it
    reads_tfidf = False
    _new_tfidf = None

    @contextlib.contextmanager
    def new_posts_tfidf(self, rows):
        """Within the block, the new posts scored (``videos`` as [B, F] feature rows) have the TF-IDF rows ``rows``
        (a scipy CSR [B, terms] over the dataset's TF-IDF terms: ``import_posts.new_post_tfidf``)."""
        self._new_tfidf = rows
        try:
            yield self
        finally:
            self._new_tfidf = None

    def new_tfidf_rows(self, count):
        """The TF-IDF rows of the ``count`` new posts being scored, or one clear error when none were given."""
        rows = self._new_tfidf
        if rows is None:
            raise ValueError(f'{type(self).__name__} compares posts by their TF-IDF rows (text=tfidf): a new post '
                             f'needs its text (scripts/recommend.py --text), or a post of the dataset (--video), or a model '
                             f'trained with --text dense')
        if rows.shape[0] != count:
            raise ValueError(f'{rows.shape[0]} TF-IDF rows for {count} new posts')
        return rows

    # a model that reads a new post's raw text (TagBlend's character n-gram term) sets this True: the texts are
    # given with ``new_posts_text`` around the call that scores the posts
    reads_text = False
    _new_texts = None

    @contextlib.contextmanager
    def new_posts_text(self, texts):
        """Within the block, the new posts scored (``videos`` as [B, F] feature rows) have the raw texts ``texts``."""
        self._new_texts = texts
        try:
            yield self
        finally:
            self._new_texts = None

    def new_post_texts(self, count):
        """The raw texts of the ``count`` new posts being scored, or one clear error when none were given."""
        texts = self._new_texts
        if texts is None:
            raise ValueError(f'{type(self).__name__} reads a new post\'s text (its character n-gram term): pass the '
                             f'post\'s text (scripts/recommend.py --text), or a post of the dataset (--video)')
        if len(texts) != count:
            raise ValueError(f'{len(texts)} texts for {count} new posts')
        return list(texts)

    @torch.no_grad()
    def recommend(self, users, videos, k=10, enc=None):
        """Top-k hashtags over all hashtags for each (user, video or feature row): (ids [B, k], scores [B, k])."""
        enc = self.encode() if enc is None else enc
        H = self.num_hashtag
        hashtags = torch.arange(H, device=users.device).expand(len(users), H)
        top = torch.topk(self.score(enc, users, videos, hashtags), min(k, H), dim=1)
        return top.indices, top.values


def rows(x, index):
    """x[index] for a 1-D index. index_select copies whole rows and its backward is index_add, both cheaper on CPU
    than advanced indexing (aten::index / index_put_)."""
    return x.index_select(0, index)


def user_hashtag_counts(graph, num_hashtag):
    """(keys, counts) of the training graph's (user, hashtag) pairs: keys u * H + h, sorted (pairs are grouped by user,
    then hashtag), counts |V(u, h)| as float; ``sorted_lookup(keys, counts, u * H + h)`` is the user's count of h."""
    return graph.pair_user * num_hashtag + graph.pair_hashtag, graph.pair_count.float()


def run_positions(starts, lens):
    """Where the entries of runs [starts[i], starts[i] + lens[i]) of a flat table lie: (run of each entry [E], its
    index into the table [E]), runs in order."""
    row = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    offset = torch.arange(int(lens.sum()), device=lens.device) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens,
                                                                                         lens)
    return row, torch.repeat_interleave(starts, lens) + offset


def csr_positions(ptr, ids):
    """Where the entries of rows ``ids`` of a CSR table (``ptr`` [n + 1]) lie: (position in ``ids`` [E], index into
    the table's entries [E]) for every entry of every given row, rows in order."""
    return run_positions(ptr[ids], ptr[ids + 1] - ptr[ids])


def gather_rows(table, index):
    """table[index] for a 2-D (or any) index: [*index.shape, d], via index_select on the flattened index."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.size(-1))


def is_every_hashtag(hashtags, num_hashtag):
    """Whether candidates [B, C] are every hashtag in id order in every row (full ranking's expanded arange)."""
    return (hashtags.dim() == 2 and hashtags.size(1) == num_hashtag and hashtags.stride(0) == 0
            and bool((hashtags[0] == torch.arange(num_hashtag, device=hashtags.device)).all()))


def lookup_pairs(keys, values, ids, hashtags, num_hashtag):
    """values of the keys ids * H + hashtags ([B] ids, [B, C] candidates; keys sorted ascending, 0 where absent):
    [B, C]. Under full ranking (``is_every_hashtag``) each row's entries are found as one run of the sorted keys
    and scattered into a dense row, instead of one binary search per (row, hashtag)."""
    if not is_every_hashtag(hashtags, num_hashtag):
        return sorted_lookup(keys, values, ids.unsqueeze(1) * num_hashtag + hashtags)
    row, col, val = pair_entries(keys, values, ids, num_hashtag)
    out = torch.zeros(len(ids), num_hashtag, dtype=values.dtype, device=values.device)
    out[row, col] = val
    return out


def pair_entries(keys, values, ids, num_hashtag):
    """The stored entries of rows ``ids`` [B] over every hashtag (keys = id * H + hashtag, sorted ascending): (row in
    ``ids``, hashtag, value) of each, rows in order: the sparse form of ``lookup_pairs`` under full ranking."""
    lo = torch.searchsorted(keys, ids * num_hashtag)
    row, at = run_positions(lo, torch.searchsorted(keys, (ids + 1) * num_hashtag) - lo)
    return row, keys[at] % num_hashtag, values[at]


def sorted_lookup(keys, values, query):
    """values[i] where keys[i] == query (keys sorted ascending), 0 where query is not among keys: [*query.shape]."""
    pos = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return torch.where(keys[pos] == query, values[pos], torch.zeros((), dtype=values.dtype, device=query.device))
