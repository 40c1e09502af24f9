"""TagBlend (model_blend.py, an extension, not the paper's): each of its terms against a literal loop, the score as
their weighted sum, the character n-gram term on an import, and one clear error where a term cannot be had."""
import json
import os

import numpy as np
import pytest

from conftest import cli
import torch

from phr.core.base import Posts as P

from phr.data import posts as import_posts
from phr.data.text import CharGrams
from data_load import POSTS_FILE, load_dataset
from evaluation import evaluate, full_split
from phr.models.signals import user_hashtag_counts
from phr.core.sparse import sorted_lookup
from phr.models.registry import build_model

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'twitter')


def tags_of(data, v):
    return data.vh_idx[data.vh_ptr[v]:data.vh_ptr[v + 1]]


def owners(data):
    owner = torch.full((data.num_video,), -1, dtype=torch.long)
    owner[data.val.videos], owner[data.test.videos] = data.val.users, data.test.users
    owner[data.train[:, 1]] = data.train[:, 0]
    return owner


def test_terms_against_literal_loops(tiny_data):
    """counts and popularity leave a training post out; ``own`` is the user's *other* training posts voting with
    their cosine to the post to the power; ``peers`` is log(1 + the top-k similar users' cosine-weighted uses);
    the score is the terms weighted by the configuration (counts 1, popularity 1e-3)."""
    d = tiny_data
    H = d.num_hashtag
    m = build_model('TagBlend', d, votes_k=5, power=2.0, peers_k=3, mix=2.0, own_mix=3.0, peers_mix=0.3).eval()
    assert not m.uses['grams']                       # generated data keeps no texts: the term is off, not faked
    tr = d.train[:30]
    rows = torch.cat([tr[:, :2], torch.stack([d.test.users[:10], d.test.videos[:10]], 1)])
    users, videos = rows[:, 0], rows[:, 1]
    with torch.no_grad():
        terms = m.terms(users, P(ids=videos))
        score = m.score_all({}, users, P(ids=videos))
    keys, counts = user_hashtag_counts(d.graph, H)
    c = sorted_lookup(keys, counts, users[:, None] * H + torch.arange(H))
    mine = torch.zeros(len(rows), H)
    for i in range(len(tr)):
        mine[i, tags_of(d, int(videos[i]))] = 1
    pop = torch.bincount(d.train[:, 2], minlength=H).float()
    assert torch.allclose(terms['counts'], torch.log1p(c - mine), atol=1e-6)
    assert torch.allclose(terms['popularity'], torch.log1p(pop - mine) / np.log1p(pop.max().item()), atol=1e-6)

    feats = torch.nn.functional.normalize(m.features, dim=1)
    owner = owners(d)
    pool = torch.unique(d.train[:, 1])
    for i, (u, v) in enumerate(rows.tolist()):
        ref = torch.zeros(H)
        for p in pool[owner[pool] == u].tolist():
            if p != v:
                ref[tags_of(d, p)] += max(float(feats[v] @ feats[p]), 0.0) ** 2
        assert torch.allclose(terms['own'][i], ref, atol=1e-4), i

    g = d.graph
    b = torch.zeros(d.num_user, H)
    b[g.pair_user, g.pair_hashtag] = 1
    bn = torch.nn.functional.normalize(b, dim=1)
    for i, u in enumerate(users.tolist()):
        sims = bn @ bn[u]
        sims[u] = -1
        top = torch.topk(sims, 3)
        ref = torch.log1p((top.values[:, None] * b[top.indices]).sum(0))
        assert torch.allclose(terms['peers'][i], ref, atol=1e-4), i

    ref = terms['counts'] + 2.0 * terms['votes'] + 3.0 * terms['own'] + 0.3 * terms['peers'] \
        + 1e-3 * terms['popularity']
    assert torch.allclose(score, ref, atol=1e-5)
    assert float(terms['own'].abs().sum()) > 0 and float(terms['peers'].abs().sum()) > 0


def _centroid_reference(rows_of, d, users_videos):
    """The centroid term by a literal loop: for each (post, hashtag), the sum of the rows of the training posts
    carrying the hashtag, the post itself left out, and the post's cosine to it (0 for an empty centroid)."""
    H = d.num_hashtag
    pool = torch.unique(d.train[:, 1]).tolist()
    out = torch.zeros(len(users_videos), H)
    for i, v in enumerate(users_videos):
        for h in range(H):
            c = torch.zeros_like(rows_of(v))
            for p in pool:
                if p != v and h in tags_of(d, p).tolist():
                    c += rows_of(p)
            n = float(c.norm())
            out[i, h] = float(rows_of(v) @ c) / n if n > 1e-6 else 0.0
    return out


def test_centroid_term_against_a_literal_loop(tiny_data, tweets):
    """``centroid``: the cosine of the post's content row to each hashtag's centroid (the sum of the training posts'
    rows carrying it), a training post left out of its own hashtags' centroids; dense feature rows on generated
    data, the sparse TF-IDF rows on an import; in the score with weight centroid_mix."""
    for d, kw in ((tiny_data, {}), (tweets, {'grams': 'off'})):
        m = build_model('TagBlend', d, votes_k=3, own_mix=0.0, peers_mix=0.0, centroid_mix=8.0, **kw).eval()
        assert m.uses['centroid']
        videos = torch.cat([d.train[:6, 1], d.test.videos[:4]])
        users = torch.cat([d.train[:6, 0], d.test.users[:4]])
        with torch.no_grad():
            terms = m.terms(users, P(ids=videos))
            score = m.score_all({}, users, P(ids=videos))
        if m.tfidf is not None:
            x = torch.from_numpy(d.text_tfidf.toarray())
        else:
            x = torch.nn.functional.normalize(m.features, dim=1)
        ref = _centroid_reference(lambda v: x[v], d, videos.tolist())
        assert float(ref.abs().sum()) > 0
        assert torch.allclose(terms['centroid'], ref, atol=1e-4)
        want = sum(m.mix[t] * terms[t] for t in terms)
        assert torch.allclose(score, want, atol=1e-5) and m.mix['centroid'] == 8.0
        # a test post given as a new post (its feature row; on the import its TF-IDF row) gets the same term
        tv = d.test.videos[:4]
        tfidf_rows = d.text_tfidf[tv.numpy()] if m.tfidf is not None else None
        with torch.no_grad():
            new = m.new_post_terms(d.test.users[:4], P(features=d.features[tv], tfidf=tfidf_rows))['centroid']
        assert torch.allclose(new, terms['centroid'][6:], atol=1e-5)
    off = build_model('TagBlend', tiny_data, votes_k=3)
    assert not off.uses['centroid'] and not hasattr(off, 'centroid_sq')     # the default: off, no table


def test_zero_weights_turn_terms_off_and_it_ranks_every_hashtag(tiny_data):
    """A weight of 0 builds no table for its term; the model is evaluated as built (no training) under both
    protocols."""
    d = tiny_data
    m = build_model('TagBlend', d, votes_k=5, own_mix=0.0, peers_mix=0.0).eval()
    assert not m.uses['own'] and not m.uses['peers'] and not hasattr(m, 'own_ptr')
    full = evaluate(m, full_split(d, d.test), ks=(10,))
    sampled = evaluate(m, d.test, ks=(10,))
    assert 0 < full['recall@10'] <= 1 and 0 < sampled['recall@10'] <= 1


@pytest.fixture(scope='module')
def tweets(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('tweets') / 'data')
    cli(import_posts, [FIXTURES, '--out', out, '--format', 'twitter', '--seed', '3'])
    return load_dataset(out, verbose=False)


def test_character_ngram_votes_on_an_import(tweets):
    """On an import (it keeps posts.jsonl) the grams term is the similar posts' votes over character 3-5-gram TF-IDF
    of the texts (hashtags stripped); grams=on without texts is one clear error."""
    d = tweets
    m = build_model('TagBlend', d, votes_k=3, power=1.0, grams='on', own_mix=0.0, peers_mix=0.0).eval()
    assert m.uses['grams']
    rows = CharGrams(d.texts).rows
    x = torch.from_numpy(rows.toarray())
    pool = torch.unique(d.train[:, 1])
    users, videos = d.test.users, d.test.videos
    with torch.no_grad():
        grams = m.terms(users, P(ids=videos))['grams']
    for i, v in enumerate(videos.tolist()):
        sims = x[pool] @ x[v]
        top = torch.topk(sims, min(3, len(pool)))
        ref = torch.zeros(d.num_hashtag)
        for j, s in zip(top.indices.tolist(), top.values.tolist()):
            ref[tags_of(d, int(pool[j]))] += max(s, 0.0)
        assert torch.allclose(grams[i], ref, atol=1e-5), i


def test_clear_errors(tiny_data):
    with pytest.raises(ValueError, match='grams=on needs the posts'):
        build_model('TagBlend', tiny_data, grams='on')
    with pytest.raises(ValueError, match='must be >= 0'):
        build_model('TagBlend', tiny_data, mix=-1.0)


def test_a_new_post_by_its_text_scores_as_the_same_post_of_the_dataset(tweets):
    """A new post's character n-gram votes come from its raw text (``Posts.texts``; scripts/recommend.py --text),
    vectorised as the dataset's posts were: a test post given as a new post (its feature row and its text) scores
    every hashtag as the post itself does. Without the text it is one clear error."""
    m = build_model('TagBlend', tweets, votes_k=3, grams='on', text='dense').eval()
    assert m.uses['grams'] and m.reads_text
    with open(os.path.join(tweets.path, POSTS_FILE), encoding='utf-8') as f:
        texts = [json.loads(line)['text'] for line in f if line.strip()]
    users, videos = tweets.test.users, tweets.test.videos
    with torch.no_grad():
        want = m.score_all({}, users, P(ids=videos))
        got = m.score_all({}, users, P(features=tweets.features[videos], texts=[texts[v] for v in videos.tolist()]))
    assert want[:, :].abs().sum() > 0
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match='reads a new post.s text'):
        m.score_all({}, users[:2], P(features=tweets.features[:2]))
