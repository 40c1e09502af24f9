"""Import a dump of social-media posts into a dataset folder (the authors' layout), then partition it.

    python scripts/import_posts.py posts.jsonl --out Data/mine                      # JSON lines
    python scripts/import_posts.py posts.csv --out Data/mine --visual vis.npz       # CSV, with per-post visual features
    python scripts/import_posts.py crawl/ --format twitter --out Data/tweets        # Twitter API v1.1 JSON responses
    python scripts/import_posts.py ../shared/data/howyoutag --out Data/howyoutag    # #HowYouTagTweets (TSV), authors' split
    python scripts/import_posts.py ../shared/data/howyoutag --out Data/howyoutag_makers --split makers   # the makers' split

Input formats (``--format``, default ``auto``: ``.csv`` files are CSV, JSON that holds tweets is ``twitter``,
other JSON is ``jsonl``, ``.tsv`` files are ``howyoutag``):
  * ``jsonl``: one JSON object per line (a JSON array of objects is read too) with ``author`` (or ``user``),
    ``post_id`` (or ``id``), ``text`` and ``hashtags`` (a list, or a string of tags separated by spaces/commas;
    ``#`` optional). Without ``hashtags`` the ``#tags`` in the text are used.
  * ``csv``: a header row with the same column names.
  * ``twitter``: Twitter API v1.1 responses, ``.json``/``.json.gz``/``.jsonl`` files or folders of them: a tweet,
    a list of tweets (timelines), ``{"statuses": [...]}`` (search), user objects with their embedded ``status``,
    streaming dumps (one tweet per line) and recorded HTTP cassettes (``{"http_interactions": [...]}``, whose
    response bodies are JSON strings). Only original posts are kept: a retweet is replaced by the tweet it
    retweets, a quote tweet is kept and the quoted tweet is taken as a post of its own author; every post once
    (by ``id_str``). Author = ``screen_name``; text = ``full_text`` (or ``extended_tweet``), hashtags =
    ``entities.hashtags``.
  * ``howyoutag``: the #HowYouTagTweets files (Zhang et al., EMNLP 2021; ``train.tsv``, ``valid.tsv``,
    ``test.tsv``): one tweet per line, ``text <TAB> user id <TAB> hashtag <TAB> hashtag ...``, no header, the
    hashtags already removed from the text. Post id = ``<file stem>:<line number>``.

Split (``--split``): ``authors`` (default) pools every post and applies the authors' per-user 80/10/10 split
(scripts/partition.py); ``makers`` keeps the split the input files carry, by file name (``train`` / ``valid`` or ``val`` /
``test``: for #HowYouTagTweets, the makers' split by time per user).

Output (``--out``): ``user_list.txt`` (author names), ``hashtag_list.txt``, ``video_list.txt`` (post ids),
``video_info.txt`` (partition input), the three feature files, ``posts.jsonl`` (the kept posts, read by
``scripts/recommend.py``), ``text_model.npz`` (the fitted text vectoriser, so a new post's text gets the same features),
then ``scripts/partition.py``'s files. Features:
  * text (``FeatureText_normal.npy``): TF-IDF (scikit-learn) of the text with hashtags and URLs removed, so the
    label is not in the input, reduced to ``--text_dim`` (100) dims with truncated SVD, rows L2-normalised
    (a post with no words left is an all-zero row);
  * visual / acoustic: ``--visual FILE.npz`` / ``--audio FILE.npz`` with arrays ``ids`` (post ids) and
    ``features`` [n, d]; posts without a vector get zeros. A modality not given is an all-zero block of the
    authors' width (2048 / 128; ``--missing_dim`` to change).
Filters, applied together until nothing changes: ``--min_posts`` per author, ``--min_uses`` per hashtag (posts
left without a hashtag are dropped). Hashtags are case-folded unless ``--no-casefold``.
"""
import argparse
import csv
import gzip
import html
import io
import json
import shutil
import zlib
import os
import re
from collections import Counter

import numpy as np

from phr.util import atomic
from data_load import (FEATURE_FILES, ID_FILES, LIST_FILES, POSTS_FILE, TFIDF_FILE, DataError, load_npz,
                       save_npy_atomic)
from phr.data.partition import RAW_FILE, partition
from phr.data.text import (HASHTAG_RE, INVISIBLE_RE, MENTION_RE, TEXT_MODEL, URL_RE, fit_text_model, fit_tfidf_rows,
                           save_text_model, strip_text, text_features)

AUTHOR_DIMS = (2048, 128, 100)   # visual, acoustic, textual: the authors' widths (FEATURE_FILES order)


# ----------------------------------------------------------------------------------------------- reading posts

def _open(fname):
    # utf-8-sig: a byte-order mark (Excel's UTF-8 CSV export) is dropped, not read into the first column's name
    return gzip.open(fname, 'rt', encoding='utf-8-sig') if fname.endswith('.gz') else open(fname, encoding='utf-8-sig')


def read_text(fname):
    """The whole text of a (possibly gzipped) UTF-8 file, or one clear error."""
    try:
        with _open(fname) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f'{fname}: not UTF-8 text (byte {e.start}); re-encode it as UTF-8 '
                        f'(e.g. iconv -f latin1 -t utf-8)') from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f'{fname}: cannot be read ({e.__class__.__name__}: {e}); a corrupt or truncated file?') from None


def _loads(text, fname):
    try:
        return json.loads(text)
    except RecursionError:
        raise DataError(f'{fname}: JSON nested too deeply to be a post') from None


def _json_documents(fname):
    """The JSON values of a file: one document, or one per line (JSON lines)."""
    text = read_text(fname)
    try:
        return [_loads(text, fname)]
    except json.JSONDecodeError:
        pass
    docs = []
    for i, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                docs.append(_loads(line, fname))
            except json.JSONDecodeError as e:
                raise DataError(f'{fname}: line {i + 1} is not JSON ({e.msg}); expected one JSON document or '
                                f'JSON lines') from None
    return docs


def _files(inputs, exts):
    out = []
    for p in inputs:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                out += [os.path.join(root, n) for n in sorted(names) if n.endswith(exts)]
        elif os.path.exists(p):
            out.append(p)
        else:
            raise DataError(f'{p}: no such file or folder')
    if not out:
        raise DataError(f'{", ".join(inputs)}: no input file (looked for {", ".join(exts)})')
    return out


def split_tags(value, where='hashtags'):
    """A hashtag field: a list of strings, or a string separated by spaces/commas/semicolons/pipes; '#' optional.
    Anything else (null, a number, an object, a list holding one) is an error naming ``where``."""
    if isinstance(value, str):
        items = re.split(r'[\s,;|]+', value)
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        items = value
    else:
        raise DataError(f'{where}: "hashtags" must be a list of strings or one string, got {json.dumps(value)[:60]} '
                        f'(leave the key out to use the #tags of the text)')
    return [t.strip().lstrip('#\uff03') for t in items if t.strip().lstrip('#\uff03')]


def _generic(rec, where):
    if not isinstance(rec, dict):
        raise DataError(f'{where}: expected an object with author, post_id, text, hashtags; got {type(rec).__name__}')
    author = rec.get('author', rec.get('user'))
    post = rec.get('post_id', rec.get('id'))
    text = rec.get('text') or ''
    if author in (None, '') or post in (None, ''):
        raise DataError(f'{where}: a record needs "author" (or "user") and "post_id" (or "id"); got keys '
                        f'{sorted(rec)[:8]}')
    tags = split_tags(rec['hashtags'], where) if 'hashtags' in rec else HASHTAG_RE.findall(str(text))
    return {'post_id': str(post), 'author': str(author), 'text': str(text), 'hashtags': tags}


SPLIT_OF_FILE = {'train': 0, 'valid': 1, 'val': 1, 'dev': 1, 'test': 2}


def read_howyoutag(fname):
    """One #HowYouTagTweets file: ``text <TAB> user id <TAB> hashtag [<TAB> hashtag ...]`` per line, no header."""
    stem = os.path.basename(fname).split('.')[0]
    posts = []
    with io.StringIO(read_text(fname), newline='') as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip('\r\n')
            if not line.strip():
                continue
            parts = line.split('\t')
            tags = [t.strip().lstrip('#\uff03') for t in parts[2:] if t.strip().lstrip('#\uff03')]
            if len(parts) < 3 or not parts[1].strip():
                raise DataError(f'{fname}: line {i}: expected text, user id and hashtags, tab-separated '
                                f'(#HowYouTagTweets layout); got {len(parts)} field(s)')
            # a line whose hashtag fields are empty is kept here and dropped with the other untagged posts
            posts.append({'post_id': f'{stem}:{i}', 'author': parts[1].strip(), 'text': parts[0], 'hashtags': tags,
                          'file': stem})
    return posts


def read_csv(fname):
    reader = csv.DictReader(io.StringIO(read_text(fname), newline=''))
    return [_generic({k: v for k, v in r.items() if not (k == 'hashtags' and v in (None, ''))},
                     f'{fname}: line {i + 2}') for i, r in enumerate(reader)]


def generic_records(docs, fname):
    """Posts of the JSON documents of one file (objects, or arrays of objects)."""
    records = [rec for doc in docs for rec in (doc if isinstance(doc, list) else [doc])]
    return [_generic(rec, f'{fname}: record {i + 1}') for i, rec in enumerate(records)]


def _is_tweet(x):
    return isinstance(x, dict) and 'id_str' in x and ('full_text' in x or 'text' in x) and 'entities' in x \
        and 'screen_name' not in x


def _tweet_post(t, author):
    ext = t.get('extended_tweet') or {}
    # the API escapes &, < and > (and sometimes ") in the text as HTML entities: &amp; is the character &
    text = html.unescape(ext.get('full_text') or t.get('full_text') or t.get('text') or '')
    entities = ext.get('entities') or t.get('entities') or {}
    tags = [h['text'] for h in entities.get('hashtags', []) if h.get('text')]
    return {'post_id': t['id_str'], 'author': author, 'text': text, 'hashtags': tags}


def collect_tweets(doc, out, stats, author=None):
    """Walk any Twitter v1.1 JSON value and append the original tweets in it to ``out``."""
    if isinstance(doc, list):
        for x in doc:
            collect_tweets(x, out, stats, author)
        return
    if not isinstance(doc, dict):
        return
    if 'http_interactions' in doc:   # a recorded HTTP cassette: response bodies are JSON strings
        for it in doc['http_interactions']:
            body = (it.get('response') or {}).get('body') or {}
            try:
                inner = json.loads(body.get('string') or '')
            except (json.JSONDecodeError, TypeError):
                stats['bodies not JSON'] += 1
                continue
            collect_tweets(inner, out, stats)
        return
    if _is_tweet(doc):
        user = doc.get('user') or {}
        name = user.get('screen_name') or user.get('id_str') or author
        if 'retweeted_status' in doc:
            stats['retweets skipped'] += 1
        elif name is None:
            stats['tweets without author'] += 1
        else:
            out.append(_tweet_post(doc, name))
        for key in ('retweeted_status', 'quoted_status'):
            if isinstance(doc.get(key), dict):
                collect_tweets(doc[key], out, stats)
        return
    if 'screen_name' in doc:         # a user object: its embedded latest tweet has no "user" of its own
        if isinstance(doc.get('status'), dict):
            collect_tweets(doc['status'], out, stats, author=doc['screen_name'])
        return
    for v in doc.values():
        if isinstance(v, (list, dict)):
            collect_tweets(v, out, stats, author)


def _looks_like_twitter(doc):
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    return isinstance(doc, dict) and ('http_interactions' in doc or 'statuses' in doc or 'screen_name' in doc
                                      or _is_tweet(doc))


def read_posts(inputs, fmt='auto'):
    """All posts of the inputs, as dicts (post_id, author, text, hashtags), and a Counter of what was skipped."""
    stats = Counter()
    posts = []
    for fname in _files(inputs, ('.json', '.json.gz', '.jsonl', '.jsonl.gz', '.csv', '.tsv')):
        kind = fmt
        if kind == 'auto' and fname.endswith('.csv'):
            kind = 'csv'
        if kind == 'auto' and fname.endswith('.tsv'):
            kind = 'howyoutag'
        if kind == 'howyoutag':
            posts += read_howyoutag(fname)
            continue
        if kind == 'csv':
            posts += read_csv(fname)
            continue
        docs = _json_documents(fname)
        if kind == 'twitter' or (kind == 'auto' and docs and _looks_like_twitter(docs[0])):
            collect_tweets(docs, posts, stats)
        else:
            posts += generic_records(docs, fname)
    return posts, stats


# ------------------------------------------------------------------------------------------------- filtering

def clean_posts(posts, casefold=True, min_posts=2, min_uses=1):
    """Deduplicate posts by id, normalise hashtags, then apply the filters until nothing changes."""
    seen, out, dup = set(), [], 0
    for p in posts:
        if p['post_id'] in seen:
            dup += 1
            continue
        seen.add(p['post_id'])
        tags = [INVISIBLE_RE.sub('', t) for t in p['hashtags']]   # #tag and #ta<ZWSP>g are one hashtag
        tags = [t.casefold() if casefold else t for t in tags if t.strip('\u200c\u200d')]
        out.append(dict(p, hashtags=list(dict.fromkeys(tags))))   # one post naming a tag twice: one use
    report = {'posts read': len(posts), 'duplicates dropped': dup,
              'posts without hashtag dropped': sum(not p['hashtags'] for p in out)}
    out = [p for p in out if p['hashtags']]
    while True:
        uses = Counter(t for p in out for t in p['hashtags'])
        kept = []
        for p in out:
            tags = [t for t in p['hashtags'] if uses[t] >= min_uses]
            if tags:
                kept.append(dict(p, hashtags=tags))
        per_author = Counter(p['author'] for p in kept)
        kept = [p for p in kept if per_author[p['author']] >= min_posts]
        if len(kept) == len(out) and sum(len(p['hashtags']) for p in kept) == sum(len(p['hashtags']) for p in out):
            break
        out = kept
    report['posts kept'] = len(out)
    return out, report


# ------------------------------------------------------------------------------------------ media features

def read_feature_file(fname, post_ids, what):
    """[len(post_ids), d] from an npz with ``ids`` and ``features``; posts it lacks get zeros."""
    z = load_npz(fname, f'feature file (--{what})')
    if 'ids' not in z or 'features' not in z:
        raise DataError(f'{fname}: expected arrays "ids" and "features" in the npz; found {sorted(z)}')
    ids, feats = z['ids'].astype(str), z['features']
    if feats.ndim != 2 or len(feats) != len(ids):
        raise DataError(f'{fname}: "features" has shape {feats.shape}; expected [{len(ids)} ids, dim]')
    if feats.dtype.kind not in 'fiu':
        raise DataError(f'{fname}: "features" has dtype {feats.dtype}; expected numbers')
    if not np.isfinite(feats).all():
        r = int(np.flatnonzero(~np.isfinite(feats).all(1))[0])
        raise DataError(f'{fname}: NaN or inf in the features of post {str(ids[r])!r} (row {r})')
    row = {p: i for i, p in enumerate(ids)}
    idx = np.array([row.get(p, -1) for p in post_ids])
    out = np.zeros((len(post_ids), feats.shape[1]), dtype=np.float32)
    out[idx >= 0] = feats[idx[idx >= 0]]
    return out, int((idx < 0).sum())


# ------------------------------------------------------------------------------------------------------ main

def split_codes(posts):
    """The split each post's input file names (``--split makers``): 0 train, 1 val, 2 test, one per post."""
    codes = []
    for p in posts:
        stem = p.get('file')
        if stem is None or stem.lower() not in SPLIT_OF_FILE:
            raise DataError(f'--split makers: post {p["post_id"]} comes from a file whose name says no split '
                            f'(expected train / valid / test files, e.g. the #HowYouTagTweets .tsv files)')
        codes.append(SPLIT_OF_FILE[stem.lower()])
    codes = np.asarray(codes, dtype=np.int64)
    for c, name in enumerate(('train', 'valid', 'test')):
        if not (codes == c).any():
            raise DataError(f'--split makers: no {name} post among the inputs')
    return codes


# what an import writes: the only files a folder may hold for --overwrite to replace it
DATASET_FILES = frozenset(LIST_FILES + FEATURE_FILES + ID_FILES + (RAW_FILE, POSTS_FILE, TEXT_MODEL, TFIDF_FILE))


def check_out(inputs, out, overwrite=False):
    """Refuse an ``--out`` whose replacement would lose something: a folder that holds files (without
    ``overwrite``), a folder that is not a dataset (``Data/``, ``.``, a project folder: even with ``overwrite``),
    or one that holds (or is) an input file."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f'--out {out}: is a file, expected a folder')
    real, cwd = os.path.realpath(out), os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real + os.sep):
        raise DataError(f'--out {out}: is the current folder or holds it; name a dataset folder (e.g. Data/mine)')
    for src in inputs:
        r = os.path.realpath(src)
        if r == real or r.startswith(real + os.sep):
            raise DataError(f'--out {out}: holds the input {src}, which replacing the folder would delete; '
                            f'import into another folder')
    if not os.path.isdir(out):
        return
    names = sorted(os.listdir(out))
    if not names:
        return
    foreign = [n for n in names if n not in DATASET_FILES]
    if foreign:
        raise DataError(f'--out {out}: not a dataset folder (it holds {", ".join(foreign[:5])}'
                        f'{", ..." if len(foreign) > 5 else ""}); an import writes a folder of its own, e.g. '
                        f'{os.path.join(out, "mine")}')
    if not overwrite:
        raise DataError(f'--out {out}: a dataset is already there ({len(names)} files); pass --overwrite to replace '
                        f'it, or import into another folder')


def clean_leftovers(out):
    """What an import into ``out`` stopped midway left beside it, of processes that are gone: an unfinished
    ``out``.importing-PID folder is removed; a ``out``.replaced-PID folder (the previous dataset, moved aside just
    before the new one took its place) is put back when ``out`` is missing, else removed. A live process's folders
    are another import at work, and stay."""
    import glob
    for path in sorted(glob.glob(glob.escape(out) + '.importing-*') + glob.glob(glob.escape(out) + '.replaced-*')):
        pid = path.rsplit('-', 1)[1]
        if not pid.isdigit() or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            os.kill(int(pid), 0)
            continue                # alive: not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if '.replaced-' in path and not os.path.exists(out):
            print(f'import: {out} was being replaced when an import stopped (pid {pid}): the previous dataset is put back')
            os.replace(path, out)
        else:
            print(f'import: removing {path}, left by an import that was stopped (pid {pid})')
            shutil.rmtree(path, ignore_errors=True)


def import_posts(inputs, out, fmt='auto', visual=None, audio=None, min_posts=2, min_uses=1, casefold=True,
                 text_dim=100, missing_dim=None, num_neg=1000, seed=2019, verbose=True, split='authors',
                 overwrite=False):
    """Import into a temporary folder beside ``out``; only a complete import replaces ``out`` (an earlier dataset
    there is never lost to a failed import, and is replaced only with ``overwrite``: ``check_out``)."""
    out = os.path.normpath(out)
    check_out(inputs, out, overwrite)
    clean_leftovers(out)
    tmp = f'{out}.importing-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        stats = _import_into(inputs, tmp, fmt, visual, audio, min_posts, min_uses, casefold, text_dim, missing_dim,
                             num_neg, seed, verbose, split)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = f'{out}.replaced-{os.getpid()}'
    if os.path.exists(out):
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return stats


def _import_into(inputs, out, fmt, visual, audio, min_posts, min_uses, casefold, text_dim, missing_dim, num_neg,
                 seed, verbose, split):
    say = print if verbose else (lambda *a, **k: None)
    raw, skipped = read_posts(inputs, fmt)
    posts, report = clean_posts(raw, casefold, min_posts, min_uses)
    if skipped:
        report.update(skipped)
    if not posts:
        raise DataError(f'{", ".join(inputs)}: no post left after the filters (--min_posts {min_posts}, '
                        f'--min_uses {min_uses}); {report}')
    users = sorted({p['author'] for p in posts})
    tags = sorted({t for p in posts for t in p['hashtags']})
    for name, kind in ((users, 'author'), (tags, 'hashtag')):
        bad = [n for n in name if not n.strip() or len(n.splitlines()) != 1]
        if bad:
            raise DataError(f'an {kind} name cannot be written one per line: {bad[0]!r}')
    U, H = len(users), len(tags)
    uid = {u: i for i, u in enumerate(users)}
    hid = {t: U + i for i, t in enumerate(tags)}
    post_ids = [p['post_id'] for p in posts]
    bad = [p for p in post_ids if not p.strip() or len(p.splitlines()) != 1]
    if bad:
        raise DataError(f'post id {bad[0]!r} is empty or holds a line break (\\n, \\r, ...): ids are written one per '
                        f'line to video_list.txt')
    os.makedirs(out, exist_ok=True)
    for fname, names in (('user_list.txt', users), ('hashtag_list.txt', tags), ('video_list.txt', post_ids)):
        with open(os.path.join(out, fname), 'w', encoding='utf-8') as f:
            f.write(''.join(n + '\n' for n in names))
    with open(os.path.join(out, RAW_FILE), 'w') as f:
        f.write(''.join(f"{uid[p['author']]};{':'.join(str(hid[t]) for t in p['hashtags'])}\n" for p in posts))
    with open(os.path.join(out, POSTS_FILE), 'w', encoding='utf-8') as f:
        f.write(''.join(json.dumps(p, ensure_ascii=False) + '\n' for p in posts))

    texts = [p['text'] for p in posts]
    model = fit_text_model([strip_text(t) for t in texts], text_dim, seed)
    rows, vectoriser = fit_tfidf_rows([strip_text(t) for t in texts])
    save_text_model(os.path.join(out, TEXT_MODEL), dict(model, **(vectoriser or {})))
    blocks = {}
    for what, src, fname, width in (('visual', visual, FEATURE_FILES[0], AUTHOR_DIMS[0]),
                                    ('audio', audio, FEATURE_FILES[1], AUTHOR_DIMS[1])):
        if src:
            arr, missing = read_feature_file(src, post_ids, what)
            say(f'import: {what} features from {src} ({arr.shape[1]} dims); {missing} posts without one get zeros')
        else:
            arr = np.zeros((len(posts), missing_dim or width), dtype=np.float32)
            say(f'import: no {what} features given: all-zero block of {arr.shape[1]} dims')
        blocks[fname] = arr
    blocks[FEATURE_FILES[2]] = text_features(texts, model)
    n_words = len(model['vocabulary'])
    empty = int((~blocks[FEATURE_FILES[2]].any(1)).sum())
    say(f'import: text features: TF-IDF over {n_words:,} words -> {model["components"].shape[0]} SVD dims '
        f'(padded to {text_dim}); {empty} posts have no word left once hashtags/URLs are removed (zero rows)')
    for fname, arr in blocks.items():
        save_npy_atomic(os.path.join(out, fname), arr)
    if rows is not None:
        import scipy.sparse
        atomic.atomic_write(os.path.join(out, TFIDF_FILE), lambda tmp: scipy.sparse.save_npz(tmp, rows), '.npz')
        say(f'import: sparse TF-IDF rows beside it ({TFIDF_FILE}): {rows.shape[1]:,} uni- and bigrams of two posts or '
            f'more, {rows.nnz / max(rows.shape[0], 1):.1f} per post')
    say('import: ' + ', '.join(f'{k} {v:,}' for k, v in report.items()) +
        f'; {U:,} authors, {H:,} hashtags, {len(posts):,} posts')
    if H < 2:
        raise DataError(f'{out}: only {H} hashtag after the filters; nothing to rank')
    codes = split_codes(posts) if split == 'makers' else None
    stats = partition(out, seed=seed, num_neg=num_neg, verbose=verbose, split=codes)
    if stats['val_rows'] == 0 or stats['test_rows'] == 0:
        raise DataError(f'{out}: the split left {stats["val_rows"]} val and {stats["test_rows"]} test posts; the '
                        f'authors\' 80/10/10 per-author split needs authors with at least 6 posts for a val post '
                        f'(raise the data, or lower --min_uses)')
    return dict(report, authors=U, **stats)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('inputs', nargs='+', help='files or folders of posts')
    p.add_argument('--out', required=True, help='dataset folder to write (e.g. Data/mine)')
    p.add_argument('--format', default='auto', choices=('auto', 'jsonl', 'csv', 'twitter', 'howyoutag'))
    p.add_argument('--split', default='authors', choices=('authors', 'makers'),
                   help="authors: per-user 80/10/10 of all posts (scripts/partition.py) | makers: the split the input "
                        "files' names give (train / valid / test)")
    p.add_argument('--visual', default=None, help='npz with "ids" and "features": per-post visual vectors')
    p.add_argument('--audio', default=None, help='npz with "ids" and "features": per-post acoustic vectors')
    p.add_argument('--min_posts', type=int, default=2,
                   help='keep authors with at least this many posts (2 = each has a training post)')
    p.add_argument('--min_uses', type=int, default=1, help='keep hashtags used at least this many times')
    p.add_argument('--casefold', action=argparse.BooleanOptionalAction, default=True,
                   help='#RStats and #rstats are one hashtag (default on)')
    p.add_argument('--text_dim', type=int, default=100, help='textual feature dims (TF-IDF -> truncated SVD)')
    p.add_argument('--missing_dim', type=int, default=None,
                   help='width of the zero block of a missing modality (default: the authors\' 2048 / 128)')
    p.add_argument('--num_neg', type=int, default=1000, help='negatives per val/test row (lowered if too few '
                                                              'hashtags, with a message)')
    p.add_argument('--seed', type=int, default=2019, help='split, negatives and SVD')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the dataset already in --out (only a folder an import wrote is ever replaced)')
    return p


def run(args):
    for flag in ('min_posts', 'min_uses', 'text_dim', 'num_neg'):
        if getattr(args, flag) < 1:
            raise SystemExit(f'error: --{flag} must be at least 1, got {getattr(args, flag)}')
    if args.missing_dim is not None and args.missing_dim < 1:
        raise SystemExit(f'error: --missing_dim must be at least 1, got {args.missing_dim}')
    try:
        return import_posts(args.inputs, args.out, args.format, args.visual, args.audio, args.min_posts,
                            args.min_uses, args.casefold, args.text_dim, args.missing_dim, args.num_neg, args.seed,
                            split=args.split, overwrite=args.overwrite)
    except DataError as e:
        raise SystemExit(f'error: {e}')
    except OSError as e:   # a read-only folder, a full disk: the earlier dataset (if any) is untouched
        raise SystemExit(f'error: --out {args.out}: cannot write the dataset ({e.strerror or e}'
                         f'{": " + e.filename if getattr(e, "filename", None) else ""}); nothing was replaced')
