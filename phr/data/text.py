"""What a post's text becomes: the text a model may read (hashtags, URLs, @mentions stripped), the dense TF-IDF + SVD
block of the features, the sparse TF-IDF rows the similar-posts models compare, the character n-grams TagBlend
reads, and a new post's text vectorised the same way as the dataset's (``text_model.npz``). The importer
(``phr.data.posts``) fits them on a dataset's posts; models and ``scripts/recommend.py`` read them."""
import os
import re

import numpy as np

from data_load import POSTS_FILE, TFIDF_FILE, DataError, load_npz

TEXT_MODEL = 'text_model.npz'
# a hashtag's letters: word characters, the zero-width (non-)joiners that Persian, Arabic and Indic scripts write inside
# words, and the invisible characters below (a tag is cut at none of them; the importer then drops the invisible ones)
HASHTAG_RE = re.compile(r'[#\uff03]([\w\u200b\u200c\u200d\u2060\ufeff]+)')
# invisible characters that make two spellings of one tag differ (zero-width space, word joiner, byte-order mark)
INVISIBLE_RE = re.compile('[\u200b\u2060\ufeff]')
URL_RE = re.compile(r'https?://\S+')
MENTION_RE = re.compile(r'@\w+')
# the vectoriser's settings, stored with the fitted model so a new post is vectorised the same way
TEXT_PARAMS = dict(lowercase=True, strip_accents='unicode', token_pattern=r'(?u)\b\w\w+\b', sublinear_tf=True,
                   smooth_idf=True)


def strip_text(text):
    """The text a model may read: hashtags (the labels), URLs and @mentions removed."""
    return MENTION_RE.sub(' ', URL_RE.sub(' ', HASHTAG_RE.sub(' ', text)))


def fit_text_model(texts, dim=100, seed=2019):
    """Fit TF-IDF + truncated SVD on ``texts``; returns the arrays ``text_features`` needs (saved as npz)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    vec = TfidfVectorizer(**TEXT_PARAMS)
    try:
        tfidf = vec.fit_transform(texts)
    except ValueError:   # no word anywhere (e.g. every text was only hashtags)
        return {'vocabulary': np.array([], dtype=str), 'idf': np.zeros(0), 'components': np.zeros((0, 0)),
                'dim': np.array(dim)}
    k = min(dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if k >= 1:
        # only components_ is kept: explained_variance_ratio_ divides by the total variance, which is 0 where every
        # post has the same words (a tiny import), and numpy's warning there says nothing about the features
        # on one BLAS thread: its sums then run in one order whatever OMP_NUM_THREADS is, so one machine imports the
        # same features (and the same data_load.fingerprint) from any shell; with two threads about 0.004% of the
        # values moved by up to 4e-8 and a sweep took the folder for another dataset
        from threadpoolctl import threadpool_limits
        with np.errstate(invalid='ignore', divide='ignore'), threadpool_limits(limits=1):
            svd = TruncatedSVD(n_components=k, random_state=seed).fit(tfidf)
        components = svd.components_
    else:
        components = np.zeros((0, tfidf.shape[1]))
    vocab = np.empty(len(vec.vocabulary_), dtype=object)
    for term, j in vec.vocabulary_.items():
        vocab[j] = term
    return {'vocabulary': vocab.astype(str), 'idf': vec.idf_, 'components': components, 'dim': np.array(dim)}


def text_features(texts, model):
    """[n, dim] float32 text features of raw texts with a fitted model (hashtags/URLs stripped here)."""
    dim = int(model['dim'])
    out = np.zeros((len(texts), dim), dtype=np.float32)
    comps = model['components']
    if len(model['vocabulary']) == 0 or comps.shape[0] == 0:
        return out
    tfidf = _weigh(texts, model['vocabulary'], model['idf'], TEXT_PARAMS)
    z = np.asarray(tfidf @ comps.T)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)   # zero rows stay zero, never NaN
    out[:, :z.shape[1]] = z
    return out


def _weigh(texts, vocabulary, idf, params):
    """[n, terms] float64 CSR: raw ``texts`` (hashtags/URLs stripped here) weighed as a fitted TfidfVectorizer of
    ``params`` with this ``vocabulary`` and ``idf`` does (sublinear tf, idf, L2-normalised rows; zero rows stay 0)."""
    from sklearn.feature_extraction.text import CountVectorizer
    kw = {k: v for k, v in params.items() if k in ('lowercase', 'strip_accents', 'token_pattern', 'ngram_range')}
    counts = CountVectorizer(vocabulary={t: i for i, t in enumerate(vocabulary)}, **kw) \
        .transform([strip_text(t) for t in texts]).astype(np.float64)
    if params['sublinear_tf']:
        counts.data = 1.0 + np.log(counts.data)
    tfidf = counts.multiply(np.asarray(idf)[None, :]).tocsr()
    return tfidf.multiply(1.0 / np.maximum(np.sqrt(tfidf.multiply(tfidf).sum(1)), 1e-12)).tocsr()


# the sparse rows' vectoriser: uni- and bigrams that two posts or more use
TFIDF_PARAMS = dict(TEXT_PARAMS, ngram_range=(1, 2), min_df=2)


def fit_tfidf_rows(texts):
    """(rows, vectoriser): [n, terms] float32 CSR, L2-normalised rows of sublinear TF-IDF over the uni- and bigrams
    that two posts or more use (the representation the similar-posts baseline reads; the 100-d SVD block keeps about
    half of what it finds on #HowYouTagTweets: docs/findings.md), and the arrays that vectorise a new post the same
    way (``tfidf_vocabulary``, ``tfidf_idf``: saved in text_model.npz). (None, None) when no term is used twice."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    vec = TfidfVectorizer(**TFIDF_PARAMS, dtype=np.float32)
    try:
        rows = vec.fit_transform(texts).tocsr()
    except ValueError:   # no term in two posts (a tiny import)
        return None, None
    vocab = np.empty(len(vec.vocabulary_), dtype=object)
    for term, j in vec.vocabulary_.items():
        vocab[j] = term
    return rows, {'tfidf_vocabulary': vocab.astype(str), 'tfidf_idf': vec.idf_}


# the character n-gram rows' vectoriser: 3- to 5-grams inside word boundaries (hashtag words are glued, tweets
# misspell), those two posts or more use
CHAR_PARAMS = dict(lowercase=True, strip_accents='unicode', analyzer='char_wb', ngram_range=(3, 5), min_df=2,
                   sublinear_tf=True, smooth_idf=True)


class CharGrams:
    """Character 3-5-gram TF-IDF of posts' texts (``CHAR_PARAMS``; no hashtag is read: ``strip_text``), fitted on the
    dataset's posts: ``rows`` [n, grams] float32 CSR of L2-normalised rows (None when no n-gram is used twice), and
    ``transform(texts)`` for new posts, vectorised the same way."""

    def __init__(self, texts):
        from sklearn.feature_extraction.text import TfidfVectorizer
        self.vectoriser = TfidfVectorizer(**CHAR_PARAMS, dtype=np.float32)
        try:
            self.rows = self.vectoriser.fit_transform([strip_text(t) for t in texts]).tocsr()
        except ValueError:   # no n-gram in two posts
            self.rows = None

    def transform(self, texts):
        return self.vectoriser.transform([strip_text(t) for t in texts]).astype(np.float32)


def new_post_tfidf(data, texts):
    """[n, terms] float32 CSR: the TF-IDF rows of new posts' raw ``texts`` over dataset ``data``'s TF-IDF terms
    (``data.text_tfidf``), for the models that compare posts by them (``Posts.tfidf``). The
    vectoriser is the one the import saved in text_model.npz; an import made before it was saved there gets it
    fitted again from the dataset's posts.jsonl (the same texts in the same order: deterministic), and checked to
    give back the stored rows before it is used."""
    path = os.path.join(data.path, TEXT_MODEL)
    if data.text_tfidf is None:
        raise DataError(f'{data.path}: no sparse TF-IDF rows ({TFIDF_FILE}); nothing to vectorise a post against')
    model = load_text_model(path)
    if 'tfidf_vocabulary' not in model:
        posts_path = os.path.join(data.path, POSTS_FILE)
        texts_then = data.texts
        if texts_then is None:
            raise DataError(f'{path}: holds no TF-IDF vectoriser (an older import) and {posts_path} is missing to '
                            f'fit it again; import the posts again to serve new posts by their text')
        rows, model = fit_tfidf_rows([strip_text(t) for t in texts_then])
        if rows is None or rows.shape != data.text_tfidf.shape or rows.nnz != data.text_tfidf.nnz \
                or abs(rows - data.text_tfidf).max() > 1e-5:
            raise DataError(f'{path}: holds no TF-IDF vectoriser (an older import), and fitting it again on '
                            f'{posts_path} does not give back {TFIDF_FILE}; import the posts again')
    rows = _weigh(texts, model['tfidf_vocabulary'], model['tfidf_idf'], TFIDF_PARAMS).astype(np.float32)
    if rows.shape[1] != data.text_tfidf.shape[1]:
        raise DataError(f'{path}: its TF-IDF vectoriser has {rows.shape[1]:,} terms, {TFIDF_FILE} has '
                        f'{data.text_tfidf.shape[1]:,}')
    return rows


def save_text_model(path, model):
    np.savez(path, **model)


def load_text_model(path):
    if not os.path.exists(path):
        raise DataError(f'{path}: missing file; the text of a new post can only be vectorised for a dataset '
                        f'made by scripts/import_posts.py')
    return load_npz(path, 'text model')
