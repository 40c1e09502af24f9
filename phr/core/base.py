"""What every model of the suite is: the ``Recommender`` interface, the ``Posts`` a model scores, and the ``HParam``
declaration of a model's knobs. Nothing here knows any model by name (the registry is ``phr/models/registry.py``).

The interface (as RecBole's ``predict`` / ``full_sort_predict``; ids are local: users [0, U), hashtags [0, H),
posts [0, V)):

    enc = model.encode()                             # propagate once: a dict of node tables, shared by every batch
    model.score(enc, users, posts, hashtags)         # users [B], posts: Posts of B, hashtags [B, C] -> [B, C]
    model.score_all(enc, users, posts)               # every hashtag of the vocabulary (full ranking) -> [B, H]
    model.recommend(users, posts, k)                 # top-k of score_all: (ids [B, k], scores [B, k])

``Posts`` is the one explicit description of the posts scored: the dataset's posts by id (``Posts(ids=...)``:
training, evaluation, ``scripts/recommend.py --video``), or new posts by what is known of them
(``Posts(features=..., tfidf=..., texts=...)``: ``scripts/recommend.py --text / --features``). A model that needs
more of a new post than its feature row says so by ``reads_tfidf`` / ``reads_text`` and gets one clear error
(``Posts.need_tfidf`` / ``need_texts``) when it is not given.

A model declares what it is next to its code (as RecBole's model + properties file): ``hparams``, its constructor
knobs with defaults, types and choices (train.py builds its CLI from them); ``search``, the grid the sweep draws its
configurations from (keyed by train.py flag); ``ablations``, the switches the sweep turns off one at a time;
``hook``, the name of its own training hook (``phr/training/hooks.py``), if it has one; ``record_fields``, what
that hook adds to a run's record and how tables write it.
"""
import math
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
    maximum: Optional[float] = None   # and a value above this (a knob whose large values mean nothing: a power)

    @property
    def cli(self):
        return self.flag or self.name

    def problem(self, value):
        """What is wrong with ``value`` for this knob (its declared range: finite, ``positive``, ``maximum``), or
        None. train.py says it of the flag before any data is read; the registry of any model built (a
        checkpoint's model_args too)."""
        if isinstance(value, float) and not math.isfinite(value):
            return f'must be a finite number, got {value!r}'
        if self.positive and not (isinstance(value, (int, float)) and value > 0):
            return f'must be positive, got {value!r}'
        if self.maximum is not None and isinstance(value, (int, float)) and not value <= self.maximum:
            return f'must be at most {self.maximum:g}, got {value!r} (larger values mean nothing here: {self.help})'
        return None

    @property
    def type(self):
        return type(self.default)


# the knob every learned model has (train.py --dim_latent)
DIM = HParam('dim', 64, 'size of every node vector', flag='dim_latent', positive=True)

# the training knobs every trainable model is searched over (train.py flags); decay_embeddings: whether the weight
# decay reaches the id embeddings and biases too (off in the authors' code)
TRAINING_SEARCH = {'l_r': [1e-3, 3e-3, 1e-2], 'weight_decay': [0.0, 1e-3, 0.1], 'decay_embeddings': [False, True]}


@dataclass(frozen=True)
class Posts:
    """The B posts a batch scores: exactly one of

    - ``ids`` [B] long: posts of the dataset (rows of its tables; training, evaluation, a dataset post served);
    - ``features`` [B, F] float: new posts' feature rows over all F columns of the dataset's features, with what
      else is known of them: ``tfidf``, their sparse TF-IDF rows over the dataset's terms (a scipy CSR [B, terms],
      ``phr.data.text.new_post_tfidf``), and ``texts``, their raw texts.
    """
    ids: Optional[torch.Tensor] = None
    features: Optional[torch.Tensor] = None
    tfidf: object = None
    texts: Optional[tuple] = None

    def __post_init__(self):
        if (self.ids is None) == (self.features is None):
            raise ValueError('Posts: give either ids (posts of the dataset) or features (new posts), not both')
        if self.ids is not None and (self.ids.is_floating_point() or self.ids.dim() != 1):
            raise ValueError(f'Posts: ids must be a 1-D integer tensor, got {self.ids.dtype} {list(self.ids.shape)}')
        if self.features is not None and (not self.features.is_floating_point() or self.features.dim() != 2):
            raise ValueError(f'Posts: features must be [B, F] float rows, got {self.features.dtype} '
                             f'{list(self.features.shape)}')
        n = len(self)
        if self.tfidf is not None and self.tfidf.shape[0] != n:
            raise ValueError(f'Posts: {self.tfidf.shape[0]} TF-IDF rows for {n} posts')
        if self.texts is not None:
            object.__setattr__(self, 'texts', tuple(self.texts))
            if len(self.texts) != n:
                raise ValueError(f'Posts: {len(self.texts)} texts for {n} posts')

    @property
    def is_new(self):
        """Whether these are new posts (not in the dataset), known by their content only."""
        return self.ids is None

    def __len__(self):
        return len(self.ids if self.ids is not None else self.features)

    def need_tfidf(self, model):
        """The new posts' TF-IDF rows, or one clear error naming the model when they were not given."""
        if self.tfidf is None:
            raise ValueError(f'{type(model).__name__} compares posts by their TF-IDF rows (text=tfidf): a new post '
                             f'needs its text (scripts/recommend.py --text), or a post of the dataset (--video), or a '
                             f'model trained with --text dense')
        return self.tfidf

    def need_texts(self, model):
        """The new posts' raw texts, or one clear error naming the model when they were not given."""
        if self.texts is None:
            raise ValueError(f'{type(model).__name__} reads a new post\'s text (its character n-gram term): pass the '
                             f'post\'s text (scripts/recommend.py --text), or a post of the dataset (--video)')
        return list(self.texts)


class Recommender(nn.Module):
    """What every model of the suite is (as RecBole's ``AbstractRecommender``).

    Subclasses define ``encode`` and ``score`` (given candidates), and ``score_all`` (every hashtag) where they can
    do better than scoring every hashtag as candidates; each is defined from the other here. Class attributes say
    what a model can do: ``trainable`` (False: evaluated as built, e.g. the popularity floors) and ``losses`` (the
    training losses of train.py it supports: ``bpr`` scores candidate pairs; ``softmax`` / ``bce`` use
    ``score_all``), what it can be set to (``hparams``, ``search``, ``ablations``: see the module docstring), and what
    a new post must bring (``reads_tfidf``, ``reads_text``).
    Feature tables and graphs are non-persistent buffers (data, not weights): a checkpoint holds only parameters.
    """
    trainable = True
    losses = ('bpr',)
    hparams = ()                    # tuple of HParam: the constructor's knobs besides ``data``
    search = dict(TRAINING_SEARCH)  # flag -> values drawn by the sweep (scripts/tune.py)
    ablations = ()                  # boolean knobs the sweep switches off one at a time after the seeds
    hook = None                     # name of the model's own training hook (phr/training/hooks.py), if any
    record_fields = {}              # what that hook adds to a run's record: field -> how the tables write it
    search_note = ''                # a sentence the sweep's report adds after the model's grid
    reads_tfidf = False             # a new post needs its TF-IDF row (Posts.tfidf)
    reads_text = False              # a new post needs its raw text (Posts.texts)

    def encode(self):
        """Propagate once: a dict of whatever ``score`` needs (node tables), shared by every batch of a pass."""
        return {}

    def score(self, enc, users, posts, hashtags):
        """users [B] ids, ``posts`` a ``Posts`` of B, hashtags [B, C] ids -> [B, C] (default: read from
        ``score_all``)."""
        if type(self).score_all is Recommender.score_all:
            raise NotImplementedError(f'{type(self).__name__} defines neither score nor score_all')
        return torch.gather(self.score_all(enc, users, posts), 1, hashtags)

    def score_all(self, enc, users, posts):
        """Every hashtag of the vocabulary, in id order: [B, H] (default: ``score`` with every hashtag as each row's
        candidates)."""
        if type(self).score is Recommender.score:
            raise NotImplementedError(f'{type(self).__name__} defines neither score nor score_all')
        H = self.num_hashtag
        return self.score(enc, users, posts, torch.arange(H, device=users.device).expand(len(users), H))

    def forward(self, users, posts, hashtags):
        return self.score(self.encode(), users, posts, hashtags)

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

    def video_features(self, posts):
        """The posts' rows of the feature table (dataset posts), or the kept columns of new posts' feature rows."""
        if not posts.is_new:
            return self.features.index_select(0, posts.ids)
        rows = posts.features
        if rows.size(1) != self.feature_width:
            raise ValueError(f'feature rows of shape {list(rows.shape)}; this model takes [B, {self.feature_width}]')
        if self.feature_cols is not None:
            rows = rows.index_select(1, self.feature_cols.to(rows.device))
        return rows.to(self.features.dtype)

    @torch.no_grad()
    def recommend(self, users, posts, k=10, enc=None):
        """Top-k hashtags over all hashtags for each (user, post): (ids [B, k], scores [B, k])."""
        enc = self.encode() if enc is None else enc
        top = torch.topk(self.score_all(enc, users, posts), min(k, self.num_hashtag), dim=1)
        return top.indices, top.values
