"""The untrained recommenders every table carries: the classic similar-posts baseline (kNN) and the two popularity
floors (SPEC §5). No gradient training; their few knobs (kNN's) are chosen on validation like any model's."""
import torch

from phr.core.base import HParam, Recommender
from phr.models.signals import TEXT, NeighbourVotes, content_rows, hashtag_popularity, user_hashtag_counts
from phr.core.sparse import lookup_pairs, lookup_rows


class GlobalPopularity(Recommender):
    """Floor: rank hashtags by how often they were used in training, the same for every user and video."""
    trainable = False
    losses = ()
    search = {}

    def __init__(self, data):
        super().__init__()
        self.num_hashtag = data.num_hashtag
        self.register_buffer('popularity', hashtag_popularity(data), persistent=False)

    def score(self, enc, users, posts, hashtags):
        return self.popularity[hashtags]

    def score_all(self, enc, users, posts):
        return self.popularity.expand(len(users), self.num_hashtag)


class UserPopularity(GlobalPopularity):
    """Floor: rank by the user's own training uses of each hashtag; ties (and unused ones) by global popularity."""

    def __init__(self, data):
        super().__init__(data)
        keys, counts = user_hashtag_counts(data.graph, self.num_hashtag)
        self.register_buffer('keys', keys, persistent=False)
        self.register_buffer('counts', counts, persistent=False)

    def score(self, enc, users, posts, hashtags):
        own = lookup_pairs(self.keys, self.counts, users, hashtags, self.num_hashtag)
        return own + self.popularity[hashtags] / (self.popularity.max() + 1)   # lexicographic: own count, then global

    def score_all(self, enc, users, posts):
        own = lookup_rows(self.keys, self.counts, users, self.num_hashtag)
        return own + self.popularity / (self.popularity.max() + 1)


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
               HParam('power', 1.0, 'kNN: a neighbour votes with its cosine similarity to this power', maximum=16.0),
               TEXT)
    search = {'k': [10, 25, 50, 100, 200], 'mix': [0.5, 1.0, 2.0, 4.0, 8.0], 'power': [1.0, 2.0]}

    def __init__(self, data, *, k, mix, power, text, personal=True):
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

    def score(self, enc, users, posts, hashtags):
        s = torch.gather(self._votes(posts), 1, hashtags)
        if self.personal:
            s = self.mix * s + torch.log1p(lookup_pairs(self.keys, self.counts, users, hashtags, self.num_hashtag))
        return s + self.tie_break[hashtags]

    def score_all(self, enc, users, posts):
        s = self._votes(posts)
        if self.personal:
            s = self.mix * s + torch.log1p(lookup_rows(self.keys, self.counts, users, self.num_hashtag))
        return s + self.tie_break

    def _votes(self, posts):
        """[B, H] votes of the posts' most similar training posts (new posts: by their feature rows, or, text=tfidf,
        their TF-IDF rows)."""
        feats = self.video_features(posts) if self.text == 'dense' else None
        return self.index.votes(self.index.post_similarities(posts, feats, self))
