"""Validation-only probe of what could lift the similar-posts recommender (kNN) on #HowYouTagTweets, under full
ranking (every hashtag a candidate). No training, nothing read from test. Writes a markdown table to stdout.

    python results/tried/similar_posts_variants.py Data/howyoutag_makers Data/howyoutag > results/tried/similar_posts_variants.md

Terms, each a [validation rows, H] table, mixed by hand-set weights (a probe, not a tuned model):
- counts: log(1 + the user's training count), the floor (the suite's floor also breaks its ties by popularity);
- popularity: log(1 + the hashtag's training uses);
- words: the 50 most similar training posts by the import's word TF-IDF rows vote with their cosine (kNN's votes);
- chars: the same votes over character 3-5-gram TF-IDF of the post text (fitted on the training posts);
- peers: log(1 + sum over other users u' of cos(u, u') [u' used h]), cosine of the binary user x hashtag sets of
  training (user-based collaborative filtering);
- names: sum over the post's words w (3+ letters) contained in hashtag h's name of len(w) / len(h) (string match
  of the text against hashtag names), over every hashtag of the vocabulary, or only over those seen in training.
"""
import json
import os
import re
import sys

import numpy as np
import scipy.sparse as sp
import torch

from data_load import load_dataset
from evaluation import metric_rows


def metrics(scores, truth, k=10, block=256):
    """Mean R@k and NDCG@k by the suite's own metric code (``evaluation.metric_rows``: ties counted against the
    positive, as in every table), over the rows of [rows, H] scores and truth."""
    out = []
    for lo in range(0, len(scores), block):
        s, t = torch.from_numpy(scores[lo:lo + block]).float(), torch.from_numpy(truth[lo:lo + block])
        m = metric_rows(s, t, torch.ones((), dtype=torch.bool).expand(*t.shape), (k,))[k]
        out.append(torch.stack([m['recall'], m['ndcg']], 1))
    r, n = torch.cat(out).mean(0).tolist()
    return r, n


def votes(x_pool, x_rows, y_pool, k=50):
    sims = (x_rows @ x_pool.T).toarray()
    idx = np.argpartition(-sims, k, axis=1)[:, :k]
    w = np.maximum(np.take_along_axis(sims, idx, 1), 0)
    out = np.zeros((len(sims), y_pool.shape[1]))
    for j in range(k):
        out += y_pool[idx[:, j]].multiply(w[:, j:j + 1]).toarray()
    return out


def probe(path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    d = load_dataset(path, verbose=False)
    U, H, V = d.num_user, d.num_hashtag, d.num_video
    y_all = sp.csr_matrix((np.ones(len(d.vh_idx)), d.vh_idx.numpy(), d.vh_ptr.numpy()), shape=(V, H))
    tr = d.train.numpy()
    pool = np.unique(tr[:, 1])
    counts = sp.csr_matrix((np.ones(len(tr)), (tr[:, 0], tr[:, 2])), shape=(U, H)).tocsr()
    users, videos = d.val.users.numpy(), d.val.videos.numpy()
    truth = y_all[videos].toarray() > 0
    seen = np.asarray(y_all[pool].sum(0)).ravel() > 0
    terms = {'counts': np.log1p(counts[users].toarray()),
             'pop': np.broadcast_to(np.log1p(np.asarray(y_all[pool].sum(0))), (len(users), H))}
    x = d.text_tfidf.tocsr()
    terms['words'] = votes(x[pool], x[videos], y_all[pool])
    names = [line.strip() for line in open(os.path.join(path, 'video_list.txt'))]
    text = {}
    for line in open(os.path.join(path, 'posts.jsonl')):
        r = json.loads(line)
        text[r['post_id']] = r['text']
    texts = [text[n] for n in names]
    chars = TfidfVectorizer(sublinear_tf=True, analyzer='char_wb', ngram_range=(3, 5), min_df=2)
    chars.fit([texts[i] for i in pool])
    xc = chars.transform(texts)
    terms['chars'] = votes(xc[pool], xc[videos], y_all[pool])
    b = (counts > 0).astype(np.float64).tocsr()
    bn = sp.diags(1 / (np.sqrt(np.asarray(b.sum(1)).ravel()) + 1e-9)) @ b
    peer = (bn[users] @ bn.T).toarray()
    peer[np.arange(len(users)), users] = 0
    terms['peers'] = np.log1p((sp.csr_matrix(peer) @ b).toarray())
    tags = d.hashtag_names
    words = [set(w for w in re.findall(r'\w+', texts[v].lower()) if len(w) >= 3) for v in videos]
    lengths = np.array([len(t) for t in tags], dtype=np.float64)
    name = np.zeros((len(videos), H))
    index = {}
    for i, ws in enumerate(words):
        for w in ws:
            if w not in index:
                index[w] = np.array([j for j, t in enumerate(tags) if w in t], dtype=np.int64)
            hit = index[w]
            if 0 < len(hit) < 2000:
                name[i, hit] += len(w) / lengths[hit]
    terms['names'], terms['names_seen'] = name, name * seen
    unseen = truth[:, ~seen].sum() / truth.sum()
    return d, {t: v.astype(np.float32) for t, v in terms.items()}, truth, unseen


MIXES = [('counts (the floor)', {'counts': 1}),
         ('counts + words (kNN, mix 0.5)', {'counts': 1, 'words': 0.5}),
         ('counts + words (kNN, mix 1)', {'counts': 1, 'words': 1}),
         ('counts + words (kNN, mix 2)', {'counts': 1, 'words': 2}),
         ('counts + words + 0.001 popularity (kNN, ties broken by popularity)',
          {'counts': 1, 'words': 1, 'pop': 1e-3}),
         ('counts + words + 0.1 popularity', {'counts': 1, 'words': 1, 'pop': 0.1}),
         ('counts + chars (mix 1)', {'counts': 1, 'chars': 1}),
         ('counts + (words + chars) / 2 (mix 1)', {'counts': 1, 'words': 0.5, 'chars': 0.5}),
         ('counts + words + 0.1 peers', {'counts': 1, 'words': 1, 'peers': 0.1}),
         ('counts + words + 0.3 peers', {'counts': 1, 'words': 1, 'peers': 0.3}),
         ('counts + (words + chars) / 2 + 0.1 peers', {'counts': 1, 'words': 0.5, 'chars': 0.5, 'peers': 0.1}),
         ('counts + (words + chars) / 2 + 0.3 peers', {'counts': 1, 'words': 0.5, 'chars': 0.5, 'peers': 0.3}),
         ('counts + words + 0.1 peers + 0.001 popularity', {'counts': 1, 'words': 1, 'peers': 0.1, 'pop': 1e-3}),
         ('counts + (words + chars) / 2 + 0.1 peers + 0.001 popularity',
          {'counts': 1, 'words': 0.5, 'chars': 0.5, 'peers': 0.1, 'pop': 1e-3}),
         ('counts + (words + chars) / 2 + names, every hashtag (leaks: see below)',
          {'counts': 1, 'words': 0.5, 'chars': 0.5, 'names': 1}),
         ('counts + (words + chars) / 2 + names, hashtags seen in training',
          {'counts': 1, 'words': 0.5, 'chars': 0.5, 'names_seen': 1})]


def main(paths):
    print('# What could lift the similar-posts recommender: a validation-only probe\n')
    print('`python results/tried/similar_posts_variants.py ' + ' '.join(paths) + '` (terms: the script\'s '
          'docstring). Full ranking, validation rows only, R@10 / NDCG@10 by the suite\'s metric code (ties count '
          'against the positive); weights set by hand, not tuned.\n')
    for path in paths:
        d, terms, truth, unseen = probe(path)
        print(f'## {path}: {len(truth):,} validation rows x {d.num_hashtag:,} hashtags; '
              f'{unseen:.1%} of validation hashtag uses are of hashtags never used in training\n')
        print('| scores | val R@10 | val NDCG@10 |\n|---|---|---|')
        for label, mix in MIXES:
            r, n = metrics(sum(w * terms[t] for t, w in mix.items()), truth)
            print(f'| {label} | {r:.4f} | {n:.4f} |')
        print()
    print(READING, end='')


READING = """## Reading

- **Popularity ties.** kNN scores every hashtag without a vote or a count exactly 0, and the metric counts a tie
  against the positive; breaking those ties by training popularity (as the floor does) is most of what any other
  term below adds. The suite's kNN now does it (results/tried/knn_zero_ties.md).
- **Character n-grams** (hashtag words are glued, tweets misspell) and **peers** (user-based collaborative
  filtering) add a little on top of the tie-broken kNN on both splits. Neither is in a model of the suite yet: they
  would be TagMix input terms (the peers term needs leave-one-out for training posts, since a post's own hashtags
  shape its user's neighbours).
- **Hashtag names.** Matching the post's words inside hashtag names lifts the makers' split only when every
  hashtag of the vocabulary may match, and the gain goes when only hashtags seen in training may. The vocabulary
  holds hashtags that occur only in validation or test posts: a hashtag is in it *because* a held-out post used it,
  so its name matching that post's words is the label leaking through the protocol's candidate set. Dropped.
- **Recency.** The makers' files give no order within a user's posts: the share of validation hashtags found
  among a user's training posts is no higher for the second half of them in file order than for the first (checked
  on the raw files, not in this script), so a recency-weighted count has nothing to weight by. Not tried further.
"""


if __name__ == '__main__':
    main(sys.argv[1:] or ['Data/howyoutag_makers', 'Data/howyoutag'])
