"""scripts/import_posts.py on hand-written records in the Twitter v1.1 shapes (tests/fixtures/twitter) and in JSON lines /
CSV; scripts/recommend.py on the imported data."""
import csv
import json
import os

import numpy as np
import pytest

from conftest import cli
import torch

from phr.core.base import Posts as P

from phr.data import posts as import_posts
from phr.data import text
from phr import serve as recommend
import train
from data_load import DataError, load_dataset
from phr.training.checkpoint import load_checkpoint
from phr.models.registry import MODELS

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'twitter')


@pytest.fixture(scope='module')
def tweets_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('tweets') / 'data')
    cli(import_posts, [FIXTURES, '--out', out, '--format', 'twitter', '--seed', '3'])
    return out


def test_twitter_originals_dedup_casefold():
    posts, skipped = import_posts.read_posts([FIXTURES])   # auto-detects the Twitter shapes
    assert skipped['retweets skipped'] == 1 and skipped['bodies not JSON'] == 1
    kept, report = import_posts.clean_posts(posts, casefold=True, min_posts=2, min_uses=1)
    assert report['posts read'] == 27 and report['duplicates dropped'] == 4
    assert report['posts without hashtag dropped'] == 1 and len(kept) == 22
    by_author = {}
    for p in kept:
        by_author.setdefault(p['author'], []).append(p['post_id'])
    assert {a: len(v) for a, v in by_author.items()} == {'ana_stats': 7, 'bo_cooks': 8, 'cy_runs': 7}
    assert '400' not in {p['post_id'] for p in kept}            # the retweet itself
    assert {'100', '300', '401'} <= {p['post_id'] for p in kept}  # retweeted original, quoted original, quote
    tags = {t for p in kept for t in p['hashtags']}
    assert 'rstats' in tags and 'RStats' not in tags and len(tags) == 13
    # the user object's embedded status is attributed to that user
    assert [p['author'] for p in kept if p['post_id'] == '306'] == ['cy_runs']
    kept_case, _ = import_posts.clean_posts(posts, casefold=False, min_posts=2, min_uses=1)
    assert len({t for p in kept_case for t in p['hashtags']}) == 16


def test_filters_reach_a_fixpoint():
    posts = [{'post_id': str(i), 'author': a, 'text': '', 'hashtags': t} for i, (a, t) in enumerate([
        ('a', ['x']), ('a', ['y']), ('a', ['x', 'z']), ('b', ['y']), ('b', ['w']), ('c', ['x'])])]
    kept, _ = import_posts.clean_posts(posts, min_posts=2, min_uses=2)
    # w (1 use) goes, then b has one post left and goes, then y has one use left and goes, then a has 2 posts
    assert sorted((p['author'], tuple(p['hashtags'])) for p in kept) == [('a', ('x',)), ('a', ('x',))]


def test_imported_folder_loads_with_zero_blocks(tweets_dir, capsys):
    data = load_dataset(tweets_dir, verbose=False)
    assert (data.num_user, data.num_hashtag, data.num_video) == (3, 13, 22)
    assert data.feature_dims == (2048, 128, 100)
    assert len(data.val) == 3 and len(data.test) == 3 and data.val.num_neg == 11   # adapted from 1,000
    assert torch.isfinite(data.features).all()
    assert not data.features[:, :2176].any()                 # missing modalities: zero blocks
    names = data.video_names
    assert not data.features[names.index('306'), 2176:].any()  # only hashtags in its text: a zero row
    assert torch.allclose(data.features[names.index('100'), 2176:].norm(), torch.tensor(1.0), atol=1e-5)


def test_num_neg_adaptation_is_said(tmp_path, capsys):
    cli(import_posts, [FIXTURES, '--out', str(tmp_path / 'd'), '--seed', '3'])
    out = capsys.readouterr().out
    assert 'only 13 hashtags' in out and '--num_neg lowered from 1000 to 11' in out


def test_label_never_in_text_features():
    texts = ['New #RStats package https://t.co/x', 'new package for #python', 'python package release']
    assert text.strip_text(texts[0]).split() == ['New', 'package']
    model = text.fit_text_model([text.strip_text(t) for t in texts], dim=100)
    assert 'rstats' not in set(model['vocabulary']) and 'python' in set(model['vocabulary'])
    assert 'https' not in set(model['vocabulary'])


def test_text_features_match_sklearn():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    rng = np.random.default_rng(0)
    words = [f'w{i}' for i in range(40)]
    texts = [' '.join(rng.choice(words, 8)) for _ in range(30)]
    model = text.fit_text_model(texts, dim=10, seed=1)
    ours = text.text_features(texts, model)
    tfidf = TfidfVectorizer(**text.TEXT_PARAMS).fit_transform(texts)
    ref = TruncatedSVD(n_components=10, random_state=1).fit_transform(tfidf)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert ours.shape == (30, 10)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # a text with no known word, and an empty corpus: zero rows, never NaN
    assert not text.text_features(['zzz qqq'], model).any()
    empty = text.fit_text_model(['', '#only #tags'], dim=100)
    assert np.array_equal(text.text_features(['a b'], empty), np.zeros((1, 100), np.float32))


def _generic_posts(n_auth=3, n_posts=7):
    topics = {0: ['rstats', 'stats'], 1: ['bread', 'baking'], 2: ['running', 'marathon']}
    posts = []
    for a in range(n_auth):
        for k in range(n_posts):
            posts.append({'author': f'user{a}', 'post_id': f'p{a}_{k}', 'text': f'post {k} about topic{a} word{k}',
                          'hashtags': topics[a][:1 + k % 2]})
    return posts


def test_jsonl_and_csv_with_visual_features(tmp_path):
    posts = _generic_posts()
    jl = tmp_path / 'posts.jsonl'
    jl.write_text(''.join(json.dumps(p) + '\n' for p in posts))
    with open(tmp_path / 'posts.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, ['author', 'post_id', 'text', 'hashtags'])
        w.writeheader()
        for p in posts:
            w.writerow(dict(p, hashtags=' '.join('#' + t for t in p['hashtags'])))
    vis = np.arange(20 * 4, dtype=np.float32).reshape(20, 4) + 1
    ids = np.array([p['post_id'] for p in posts[:20]])          # one post has no visual vector
    np.savez(tmp_path / 'vis.npz', ids=ids, features=vis)
    a = cli(import_posts, [str(jl), '--out', str(tmp_path / 'a'), '--visual', str(tmp_path / 'vis.npz'),
                           '--missing_dim', '2'])
    b = cli(import_posts, [str(tmp_path / 'posts.csv'), '--out', str(tmp_path / 'b'), '--visual',
                           str(tmp_path / 'vis.npz'), '--missing_dim', '2'])
    assert a == b and a['posts kept'] == 21 and a['hashtags'] == 6
    da, db = load_dataset(str(tmp_path / 'a'), verbose=False), load_dataset(str(tmp_path / 'b'), verbose=False)
    assert torch.equal(da.features, db.features) and torch.equal(da.train, db.train)
    assert da.feature_dims == (4, 2, 100)
    row = da.video_names.index('p1_3')
    assert da.features[row, :4].tolist() == vis[ids.tolist().index('p1_3')].tolist()
    assert not da.features[da.video_names.index('p2_6'), :4].any()


def test_bad_inputs(tmp_path):
    posts = _generic_posts()
    jl = tmp_path / 'posts.jsonl'
    jl.write_text(''.join(json.dumps(p) + '\n' for p in posts))
    vis = np.ones((21, 3), np.float32)
    vis[4, 1] = np.nan
    np.savez(tmp_path / 'nan.npz', ids=np.array([p['post_id'] for p in posts]), features=vis)
    with pytest.raises(SystemExit, match=r'nan.npz: NaN or inf in the features of post .p0_4.'):
        cli(import_posts, [str(jl), '--out', str(tmp_path / 'x'), '--visual', str(tmp_path / 'nan.npz')])
    with pytest.raises(SystemExit, match='missing.jsonl: no such file'):
        cli(import_posts, [str(tmp_path / 'missing.jsonl'), '--out', str(tmp_path / 'x')])
    (tmp_path / 'bad.jsonl').write_text('{"author": "a", "text": "no id"}\n')
    with pytest.raises(SystemExit, match=r'bad.jsonl: record 1: a record needs "author".*"post_id"'):
        cli(import_posts, [str(tmp_path / 'bad.jsonl'), '--out', str(tmp_path / 'x')])
    (tmp_path / 'broken.jsonl').write_text('{"author": "a"}\n{not json\n')
    with pytest.raises(SystemExit, match=r'broken.jsonl: line 2 is not JSON'):
        cli(import_posts, [str(tmp_path / 'broken.jsonl'), '--out', str(tmp_path / 'x')])
    with pytest.raises(SystemExit, match='no post left after the filters'):
        cli(import_posts, [str(jl), '--out', str(tmp_path / 'x'), '--min_posts', '50'])


def _train_one(data_dir, tmp_path, model_name):
    knobs = ['--num_epoch', '2', '--batch_size', '16', '--dim_latent', '8'] if MODELS[model_name].trainable else []
    return train.main(['--data_path', data_dir, '--model_name', model_name, '--save_dir', str(tmp_path),
                       '--no_progress', '--seed', '0'] + knobs)


@pytest.mark.parametrize('model_name', list(MODELS))
def test_models_train_on_zero_blocks(tweets_dir, tmp_path, model_name):
    best = _train_one(tweets_dir, tmp_path, model_name)
    assert all(np.isfinite(v) for v in best['test'].values())


def test_recommend(tweets_dir, tmp_path, capsys):
    _train_one(tweets_dir, tmp_path, 'GCN_PHR')
    ckpt = str(tmp_path / 'GCN_PHR' / 'best.pt')
    data = load_dataset(tweets_dir, verbose=False)
    video = data.video_names[int(data.test.videos[0])]
    author = data.user_names[int(data.test.users[0])]
    capsys.readouterr()
    ids, scores = cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', author,
                                  '--video', video, '--topk', '5'])
    out = capsys.readouterr().out
    assert len(ids) == 5 and torch.all(scores[:-1] >= scores[1:])
    assert f'top-5 hashtags for author {author}, video {video}' in out and f'true hashtags of {video}' in out
    # the printed scores are the model's: the same as scoring that row through the evaluation path
    model, _ = load_checkpoint(ckpt, data, torch.device('cpu'))
    with torch.no_grad():
        full = model.score(model.encode(), data.test.users[:1], P(ids=data.test.videos[:1]),
                           torch.arange(data.num_hashtag).unsqueeze(0))[0]
    assert torch.allclose(torch.topk(full, 5).values, scores, atol=1e-5)
    # a new post by its text, and by its feature vector (the same vector: the same ranking)
    ids_t, scores_t = cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'ana_stats',
                                      '--text', 'tidy data frames in R'])
    row = data.features[data.video_names.index('105')].numpy()
    np.save(tmp_path / 'post.npy', row)
    ids_f, scores_f = cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'ana_stats',
                                      '--features', str(tmp_path / 'post.npy')])
    ids_v, scores_v = cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'ana_stats',
                                      '--video', '105'])
    assert torch.equal(ids_f, ids_v) and torch.allclose(scores_f, scores_v, atol=1e-5)
    assert len(ids_t) == 10
    capsys.readouterr()
    cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'nobody', '--text', 'x'])
    assert 'unknown author' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no author named 'nobody'"):
        cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'nobody', '--text', 'x',
                        '--strict'])
    with pytest.raises(SystemExit, match='post.npy: 5 values'):
        np.save(tmp_path / 'post.npy', np.zeros(5, np.float32))
        cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'ana_stats',
                        '--features', str(tmp_path / 'post.npy')])


@pytest.mark.parametrize('model_name', [n for n, s in MODELS.items() if s.cls.trainable])
def test_all_zero_feature_columns_are_left_out_exactly(tweets_dir, model_name, monkeypatch):
    """Imported posts without visual/acoustic features: the projections read only the non-zero columns, with the
    same initial weights, and every score (before and after training steps) equals the full projection's."""
    from phr.core.base import Recommender
    from phr.models.registry import build_model
    from test_model import train_steps
    data = load_dataset(tweets_dir, verbose=False)
    used = int(data.features.ne(0).any(0).sum())
    assert used <= 100 < data.features.size(1)

    def run(drop):
        monkeypatch.setattr(Recommender, 'drop_zero_feature_columns', drop)
        torch.manual_seed(0)
        # a new post is scored from its feature row: TagMix's words then read feature rows too (on the import's
        # TF-IDF rows a new post needs its TF-IDF row as well: test_recommend_serves_a_new_post_with_every_model)
        m = build_model(model_name, data, dim=8, **{'TagMix': {'text': 'dense'}}.get(model_name, {}))
        losses = train_steps(m, data, steps=3)
        m.eval()
        with torch.no_grad():
            s = m.score(m.encode(), data.test.users, P(ids=data.test.videos), data.test.candidates)
            new = m.score(m.encode(), data.test.users, P(features=data.features[data.test.videos]), data.test.candidates)
        return m, losses, s, new

    slim, l1, s1, n1 = run(True)
    full, l2, s2, n2 = run(False)
    assert slim.features.size(1) == used and full.features.size(1) == data.features.size(1)
    assert torch.allclose(torch.tensor(l1), torch.tensor(l2), atol=1e-4)
    assert torch.allclose(s1, s2, atol=1e-4) and torch.allclose(n1, s1, atol=1e-5)


HOWYOUTAG = {'train.tsv': 'new phone who dis\t11\tapple\ttech\n'
                          'coffee then code\t11\tcoffee\n'
                          'the match tonight\t22\tfootball\tsport\n',
             'valid.tsv': 'late night coding\t11\tcoffee\ttech\n',
             'test.tsv': 'what a goal\t22\tfootball\n'}


@pytest.fixture
def howyoutag_dir(tmp_path):
    src = tmp_path / 'howyoutag'
    src.mkdir()
    for name, text in HOWYOUTAG.items():
        (src / name).write_text(text, encoding='utf-8')
    return src


def test_howyoutag_reader_both_splits(howyoutag_dir, tmp_path):
    posts, _ = import_posts.read_posts([str(howyoutag_dir)])
    assert len(posts) == 5
    p = next(p for p in posts if p['post_id'] == 'train:3')
    assert p['author'] == '22' and p['text'] == 'the match tonight' and p['hashtags'] == ['football', 'sport']
    # the makers' split: the files' own train / valid / test
    out = tmp_path / 'makers'
    stats = cli(import_posts, [str(howyoutag_dir), '--out', str(out), '--split', 'makers', '--min_posts', '1'])
    assert (stats['train_videos'], stats['val_rows'], stats['test_rows']) == (3, 1, 1)
    data = load_dataset(str(out), verbose=False)
    assert data.video_names[int(data.val.videos[0])] == 'valid:1'
    assert data.video_names[int(data.test.videos[0])] == 'test:1'
    assert sorted(data.video_names[v] for v in set(data.train[:, 1].tolist())) == ['train:1', 'train:2', 'train:3']
    # the authors' split pools the five posts: per user 80/10/10, which needs 6 posts of one author for a val post
    with pytest.raises(SystemExit, match='needs authors with at least 6 posts'):
        cli(import_posts, [str(howyoutag_dir), '--out', str(tmp_path / 'authors'), '--min_posts', '1'])


def test_imports_write_sparse_tfidf_rows_that_knn_reads(tweets_dir):
    # the importer writes each post's sparse TF-IDF row beside the dense block; kNN compares posts by them where
    # they exist (text=auto), and says plainly that a new post's feature row cannot stand in for one
    from phr.models.registry import build_model
    data = load_dataset(tweets_dir, verbose=False)
    assert data.text_tfidf is not None and data.text_tfidf.shape[0] == data.num_video
    norms = np.sqrt(np.asarray(data.text_tfidf.multiply(data.text_tfidf).sum(1))).ravel()
    assert np.allclose(norms[norms > 0], 1, atol=1e-5)
    knn = build_model('kNN', data, k=5)
    assert knn.text == 'tfidf' and build_model('kNN', data, k=5, text='dense').text == 'dense'
    t = data.test
    with torch.no_grad():
        s = knn.score({}, t.users[:3], P(ids=t.videos[:3]), t.candidates[:3])
        assert torch.isfinite(s).all()
        with pytest.raises(ValueError, match='TF-IDF rows'):   # a feature row alone: its TF-IDF row is missing
            knn.score({}, t.users[:3], P(features=data.features[t.videos[:3]]), t.candidates[:3])


def test_tagmix_reads_the_sparse_tfidf_rows(tweets_dir):
    # TagMix's words term is an EmbeddingBag over a post's TF-IDF terms where the import wrote them (text=auto)
    from phr.models.registry import build_model
    data = load_dataset(tweets_dir, verbose=False)
    m = build_model('TagMix', data, dim=8, votes_k=5)
    assert m.text == 'tfidf' and m.text_bag.weight.shape == (data.text_tfidf.shape[1], 8)
    t = data.test
    m.train()
    loss = torch.nn.functional.cross_entropy(m.score_all({}, t.users, P(ids=t.videos)), data.vh_idx[data.vh_ptr[t.videos]])
    loss.backward()
    assert m.text_hashtag.weight.grad.abs().sum() > 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match='TF-IDF rows'):
        m.score_all({}, t.users[:2], P(features=data.features[t.videos[:2]]))


def test_recommend_with_a_corrupt_posts_file_is_one_clear_error(tweets_dir, tmp_path, capsys):
    import shutil
    d = tmp_path / 'copy'
    shutil.copytree(tweets_dir, d)
    _train_one(str(d), tmp_path, 'UTM')
    data = load_dataset(str(d), verbose=False)
    with open(d / 'posts.jsonl', 'w') as f:
        f.write('{"post_id": \n')                           # cut by a full disk
    with pytest.raises(SystemExit) as e:
        cli(recommend, ['--checkpoint', str(tmp_path / 'UTM' / 'best.pt'), '--data_path', str(d),
                        '--author', data.user_names[int(data.test.users[0])],
                        '--video', data.video_names[int(data.test.videos[0])]])
    msg = str(e.value)   # the checkpoint is refused by name (its dataset's texts changed), before the file is read
    assert msg.startswith('error: ') and 'posts.jsonl changed since this checkpoint was trained' in msg
    with pytest.raises(DataError, match='posts.jsonl: line 1 is not a post record'):
        load_dataset(str(d), verbose=False).texts


def _posts(path):
    with open(os.path.join(path, 'posts.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('name, knobs', [('kNN', dict(k=5)), ('TagMix', dict(dim=8, votes_k=5))])
def test_a_new_posts_text_gets_its_tfidf_row_and_the_scores_of_that_post(tweets_dir, name, knobs):
    """A test post given as new (its text) is vectorised to its stored TF-IDF row, and kNN / TagMix (text=tfidf)
    score it as they score the post itself (a test post is in no training count and no vote of its own)."""
    from phr.models.registry import build_model
    data = load_dataset(tweets_dir, verbose=False)
    texts = [p['text'] for p in _posts(tweets_dir)]
    v = data.test.videos[:4]
    rows = text.new_post_tfidf(data, [texts[i] for i in v.tolist()])
    assert abs(rows - data.text_tfidf[v.numpy()]).max() < 1e-6
    torch.manual_seed(0)
    m = build_model(name, data, **knobs).eval()
    if name == 'TagMix':   # trained-looking text and user terms, so the words term is not zero
        for p in (m.text_hashtag.weight, m.text_bag.weight, m.user_hashtag.weight):
            torch.nn.init.normal_(p, std=0.1)
    users, H = data.test.users[:len(v)], data.num_hashtag
    every = torch.arange(H).expand(len(v), H)
    with torch.no_grad():
        new = m.score({}, users, P(features=data.features[v], tfidf=rows), every)
    with torch.no_grad():
        old = m.score({}, users, P(ids=v), every)
    assert torch.allclose(new, old, atol=1e-5)


def test_an_older_import_without_the_vectoriser_gets_it_fitted_again_and_checked(tweets_dir, tmp_path):
    """Imports made before text_model.npz held the TF-IDF vectoriser: it is fitted again from posts.jsonl and
    checked against the stored rows; when posts.jsonl no longer gives them back, one clear error."""
    import shutil
    d = tmp_path / 'old'
    shutil.copytree(tweets_dir, d)
    model = text.load_text_model(str(d / 'text_model.npz'))
    text.save_text_model(str(d / 'text_model.npz'),
                                 {k: v for k, v in model.items() if not k.startswith('tfidf_')})
    data = load_dataset(str(d), verbose=False)
    texts = [p['text'] for p in _posts(str(d))]
    rows = text.new_post_tfidf(data, texts[:3])
    assert abs(rows - data.text_tfidf[:3]).max() < 1e-6
    posts = _posts(str(d))
    posts[0]['text'] = posts[1]['text']   # edited after the import: the refitted rows differ from the stored
    with open(d / 'posts.jsonl', 'w', encoding='utf-8') as f:
        f.write(''.join(json.dumps(p) + '\n' for p in posts))
    with pytest.raises(DataError, match='does not give back FeatureText_tfidf.npz'):
        text.new_post_tfidf(load_dataset(str(d), verbose=False), texts[:1])


def test_recommend_serves_a_new_post_by_text_for_knn_on_tfidf_rows(tweets_dir, tmp_path):
    _train_one(tweets_dir, tmp_path, 'kNN')
    data = load_dataset(tweets_dir, verbose=False)
    i = int(data.test.videos[0])
    author = data.user_names[int(data.test.users[0])]
    ckpt = str(tmp_path / 'kNN' / 'best.pt')
    base = ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', author]
    by_video, scores_video = cli(recommend, base + ['--video', data.video_names[i]])
    by_text, scores_text = cli(recommend, base + ['--text', _posts(tweets_dir)[i]['text']])
    assert torch.equal(by_text, by_video) and len(by_text) == min(10, data.num_hashtag)
    assert torch.allclose(scores_text, scores_video, atol=1e-5)
    np.save(tmp_path / 'f.npy', data.features[i].numpy())
    with pytest.raises(SystemExit, match='TF-IDF rows .* pass the post.s --text'):
        cli(recommend, base + ['--features', str(tmp_path / 'f.npy')])


@pytest.mark.parametrize('model_name', list(MODELS))
def test_recommend_serves_a_new_post_with_every_model(tweets_dir, tmp_path, model_name):
    """Every model of the registry, trained (or built) on an import with sparse TF-IDF rows, ranks a new post given
    by its text: kNN, TagMix and GCN-PHR+kNN get the post's TF-IDF row, the others its dense row."""
    _train_one(tweets_dir, tmp_path, model_name)
    ids, scores = cli(recommend, ['--checkpoint', str(tmp_path / model_name / 'best.pt'), '--data_path', tweets_dir,
                                  '--author', 'ana_stats', '--text', 'tidy data frames in R'])
    data = load_dataset(tweets_dir, verbose=False)
    assert len(ids) == min(10, data.num_hashtag) and torch.isfinite(scores).all()
    assert torch.all(scores[:-1] >= scores[1:])


@pytest.mark.parametrize('model_name, knobs', [('kNN', ['--text', 'tfidf']), ('TagBlend', ['--grams', 'on'])])
def test_recommend_a_feature_vector_to_a_model_that_reads_text_is_one_line(tweets_dir, tmp_path, model_name, knobs):
    """A new post given by its feature vector to a model that reads more of it (its TF-IDF row, its raw text): one line
    naming the checkpoint, the model and --text, before anything is scored."""
    train.main(['--data_path', tweets_dir, '--model_name', model_name, '--save_dir', str(tmp_path), '--no_progress',
                *knobs])
    ckpt = str(tmp_path / model_name / 'best.pt')
    data = load_dataset(tweets_dir, verbose=False)
    np.save(tmp_path / 'post.npy', data.features[0].numpy())
    with pytest.raises(SystemExit) as e:
        cli(recommend, ['--checkpoint', ckpt, '--data_path', tweets_dir, '--author', 'ana_stats',
                        '--features', str(tmp_path / 'post.npy')])
    msg = str(e.value.code)
    assert msg.startswith(f'error: {ckpt}: this {model_name} ') and '--text' in msg and '\n' not in msg, msg
