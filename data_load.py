"""Load one dataset folder in the authors' layout (SPEC §1, Data/README.md) into tensors, with checks.

    data = load_dataset('Data/demo')                      # non-pickled integer form
    data = load_dataset('Data/yfcc', allow_pickle=True)   # the authors' pickled object arrays (trusted files only)

Command line:
    python scripts/dataset.py stats   Data/demo                  # counts and statistics of a folder
    python scripts/dataset.py convert Data/yfcc --allow_pickle   # rewrite a pickled folder once in the safe form

Every problem with the input raises ``DataError`` with the file name and the problem; ``train.py`` prints it
and exits, so a user never sees a traceback from inside torch for bad data.
"""
import json
import os
import sys
from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np
import torch

FEATURE_FILES = ('FeatureVideo_normal.npy', 'FeatureAudio_avg_normal.npy', 'FeatureText_normal.npy')
# optional, written by scripts/import_posts.py: each post's sparse TF-IDF row (scipy CSR), beside the dense text block
TFIDF_FILE = 'FeatureText_tfidf.npz'
# optional, written by scripts/import_posts.py: one JSON record per post (post_id, author, hashtags, text), in video
# id order: the posts' raw texts, for the models that read them (TagBlend's character n-grams)
POSTS_FILE = 'posts.jsonl'
LIST_FILES = ('user_list.txt', 'hashtag_list.txt', 'video_list.txt')
ID_FILES = ('video_hashtag.npy', 'train.npy', 'val.npy', 'test.npy')
PAD = -1


class DataError(ValueError):
    """A problem with a dataset file; the message names the file."""


# ----------------------------------------------------------------------------------------------------------------
# small array helpers, shared with scripts/partition.py and scripts/generate.py

def count_lines(fname):
    with open(fname, 'rb') as f:
        return sum(1 for _ in f)


def read_names(fname):
    with open(fname, encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f]


def save_npy_atomic(fname, arr):
    """np.save to a temporary file, then rename into place (a crash never leaves half a file)."""
    tmp = fname + '.tmp.npy'
    np.save(tmp, arr, allow_pickle=arr.dtype == object)
    os.replace(tmp, fname)


def csr_rows(ptr):
    """The row of every entry of a CSR matrix with row pointer ``ptr`` (numpy int64)."""
    ptr = np.asarray(ptr)
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


def csr_gather(ptr, values, rows):
    """For CSR (ptr, values) and row ids ``rows``: (position in ``rows`` per entry, the entries), vectorised."""
    rows = np.asarray(rows)
    lens = ptr[rows + 1] - ptr[rows]
    owner = np.repeat(np.arange(len(rows)), lens)
    first = np.repeat(ptr[rows] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return owner, values[first + np.arange(lens.sum())]


def csr_pad(ptr, values, rows=None, width=None):
    """Rows of a CSR matrix as a dense int64 array padded with -1: [len(rows), width]."""
    rows = np.arange(len(ptr) - 1) if rows is None else np.asarray(rows)
    lens = ptr[rows + 1] - ptr[rows]
    width = int(lens.max(initial=0)) if width is None else width
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    owner, vals = csr_gather(ptr, values, rows)
    col = np.arange(len(vals)) - np.repeat(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    out[owner, col] = vals
    return out


def padded_to_csr(arr):
    """Inverse of csr_pad for a padded int array whose pads sit at the end of each row."""
    valid = arr != PAD
    lens = valid.sum(1)
    ptr = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    return ptr, arr[valid].astype(np.int64)


def ragged_to_padded(rows, fname):
    """The authors' object array of lists -> int64 padded with -1 (one-time conversion)."""
    try:
        lists = [np.asarray(r, dtype=np.int64).ravel() for r in rows]
    except (TypeError, ValueError):
        raise DataError(f'{fname}: object rows must be lists of integer ids') from None
    lens = np.array([len(r) for r in lists], dtype=np.int64)
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    vals = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    return csr_pad(ptr, vals)


# ----------------------------------------------------------------------------------------------------------------
# reading one file safely

def load_npz(fname, what='file'):
    """Every array of an .npz as a dict, never unpickling: a pickled (object) array, a damaged or missing file is one
    ``DataError`` naming the file."""
    if not os.path.exists(fname):
        raise DataError(f'{fname}: no such {what}')
    try:
        with np.load(fname, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        why = 'holds pickled object arrays, which are never unpickled' if 'allow_pickle' in str(e) else str(e)
        raise DataError(f'{fname}: {why}; write it with plain numeric or string arrays') from None
    except (OSError, EOFError) as e:
        raise DataError(f'{fname}: not a readable npz archive ({e})') from None


def load_npy(fname, allow_pickle=False, mmap=False):
    """np.load that never unpickles unless the caller opted in, with errors that name the file."""
    if not os.path.exists(fname):
        raise DataError(f'{fname}: missing file')
    folder = os.path.dirname(fname) or '.'
    try:
        return np.load(fname, allow_pickle=False, mmap_mode='r' if mmap else None)
    except ValueError as e:
        if 'pickle' not in str(e).lower() and 'object arrays' not in str(e).lower():
            raise DataError(f'{fname}: not a readable .npy file ({e})') from None
    except (OSError, EOFError) as e:
        raise DataError(f'{fname}: not a readable .npy file ({e})') from None
    if not allow_pickle:
        raise DataError(
            f"{fname}: a pickled object array (the authors' ragged format). Unpickling runs code stored in the "
            f"file, so it is off by default. If you trust the file, pass --allow_pickle, or convert the folder "
            f"once into the safe integer form: python scripts/dataset.py convert {folder} --allow_pickle")
    print(f'warning: unpickling {fname} (--allow_pickle given); only do this for files you trust', file=sys.stderr)
    try:
        return np.load(fname, allow_pickle=True)
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise DataError(f'{fname}: could not be unpickled ({type(e).__name__}: {e})') from None


def _int_array(arr, fname, what):
    if arr.dtype.kind not in 'iu':
        raise DataError(f'{fname}: wrong dtype {arr.dtype} for {what}; expected integer ids')
    return np.asarray(arr, dtype=np.int64)


def _check_trailing_pad(arr, fname):
    valid = arr != PAD
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        r = int(np.flatnonzero((valid[:, 1:] & ~valid[:, :-1]).any(1))[0])
        raise DataError(f'{fname}: row {r}: -1 padding must only come at the end of a row')


def _check_range(ids, lo, hi, fname, what, pad_ok=False):
    """Every id in [lo, hi); with ``pad_ok`` the padding value -1 is skipped (its place is checked elsewhere)."""
    if pad_ok:
        ids = ids[ids != PAD]
    if ids.size and (ids.min() < lo or ids.max() >= hi):
        bad = ids[(ids < lo) | (ids >= hi)][0]
        raise DataError(f'{fname}: {what} id {bad} outside its range [{lo}, {hi})')


def read_train(fname, allow_pickle):
    """train.npy -> int64 [N, 3] rows (user, video, hashtag), from either form."""
    arr = load_npy(fname, allow_pickle)
    if arr.dtype == object:
        # the authors' rows ((user, video), hashtag)
        try:
            flat = [(int(uv[0]), int(uv[1]), int(h)) for uv, h in arr.reshape(len(arr), -1)]
        except (TypeError, ValueError, IndexError):
            raise DataError(f'{fname}: object rows must be ((user, video), hashtag)') from None
        arr = np.array(flat, dtype=np.int64).reshape(-1, 3)
    arr = _int_array(arr, fname, 'training rows')
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f'{fname}: wrong shape {arr.shape}; expected [N, 3] rows (user, video, hashtag)')
    if len(arr) == 0:
        raise DataError(f'{fname}: no training rows')
    return arr


def read_padded(fname, allow_pickle, what):
    arr = load_npy(fname, allow_pickle)
    if arr.dtype == object:
        arr = ragged_to_padded(arr.reshape(-1), fname)
    arr = _int_array(arr, fname, what)
    if arr.ndim != 2:
        raise DataError(f'{fname}: wrong shape {arr.shape}; expected one row per {what.split()[0]}')
    used = (arr != PAD).any(0)
    return arr[:, :int(np.flatnonzero(used)[-1]) + 1] if used.any() else arr   # drop all-padding columns


# ----------------------------------------------------------------------------------------------------------------
# the loaded dataset

def _tensors_to(obj, device):
    """A copy of a dataclass with every tensor field moved to ``device``."""
    return replace(obj, **{f.name: getattr(obj, f.name).to(device) for f in fields(obj)
                           if isinstance(getattr(obj, f.name), torch.Tensor)})


@dataclass
class EvalSplit:
    """Val or test rows, ready for batched scoring. Hashtag ids are local ([0, H))."""
    users: torch.Tensor       # [R]
    videos: torch.Tensor      # [R] local video ids
    candidates: torch.Tensor  # [R, C] negatives then positives, padding = 0 where ~valid
    pos_mask: torch.Tensor    # [R, C] bool
    valid: torch.Tensor       # [R, C] bool
    num_neg: int

    def __len__(self):
        return len(self.users)

    def to(self, device):
        return _tensors_to(self, device)


@dataclass
class Graph:
    """The training graph, local ids. Triples are sorted by (user, hashtag) pair so groups are contiguous."""
    num_user: int
    num_hashtag: int
    num_video: int
    triple_user: torch.Tensor     # [N]
    triple_video: torch.Tensor    # [N]
    triple_hashtag: torch.Tensor  # [N]
    triple_pair: torch.Tensor     # [N] index into pairs, non-decreasing
    pair_user: torch.Tensor       # [P] distinct (user, hashtag) pairs, sorted by user then hashtag
    pair_hashtag: torch.Tensor    # [P]
    pair_count: torch.Tensor      # [P] |V(u, h)|: training videos u tagged with h

    def to(self, device):
        return _tensors_to(self, device)


@dataclass
class PHRData:
    path: str
    num_user: int
    num_hashtag: int
    num_video: int
    features: torch.Tensor        # [V, F] float32, the three blocks concatenated
    feature_dims: tuple
    train: torch.Tensor           # [N, 3] local (user, video, hashtag), distinct
    graph: Graph
    vh_ptr: torch.Tensor          # [V + 1] CSR of every video's hashtags (local ids), all splits
    vh_idx: torch.Tensor
    train_hashtags: torch.Tensor  # distinct hashtags seen in training: the pool of training negatives
    val: EvalSplit
    test: EvalSplit
    user_names: list
    hashtag_names: list
    video_names: list
    text_tfidf: object = None     # [V, terms] scipy CSR of TFIDF_FILE (imports), or None: for models that read it
    fingerprint: str = None       # ``fingerprint(path)``: checkpoints and sweep records say which data they came from
    fingerprint_ids: str = None   # the legacy one, without the posts' texts (``fingerprints``)

    @cached_property
    def texts(self):
        """The posts' raw texts, one per video in id order, from ``POSTS_FILE`` (imports), or None where the folder has
        none (generated data, the authors'); read on first use, checked against the video count."""
        fname = os.path.join(self.path, POSTS_FILE) if self.path else None
        if fname is None or not os.path.exists(fname):
            return None
        texts = []
        with open(fname, encoding='utf-8') as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    text, post = str(rec['text']), rec.get('post_id')
                except (ValueError, TypeError, KeyError):
                    raise DataError(f'{fname}: line {i} is not a post record (JSON with a "text"); import the posts '
                                    f'again') from None
                n = len(texts)
                if post is not None and n < self.num_video and str(post) != self.video_names[n]:
                    raise DataError(f'{fname}: post {n + 1} is {post!r}, video_list.txt says {self.video_names[n]!r}: '
                                    f'the file was reordered or edited after the import; import the posts again')
                texts.append(text)
        if len(texts) != self.num_video:
            raise DataError(f'{fname}: {len(texts):,} posts, the dataset has {self.num_video:,}')
        return texts

    def stats(self):
        """Statistics for Data/README.md and the issue notes."""
        n_pos = (self.vh_ptr[1:] - self.vh_ptr[:-1]).float()
        used_by = torch.bincount(self.graph.pair_hashtag, minlength=self.num_hashtag)
        # share of hashtags whose every use (train, val, test) comes from one user
        V = self.num_video
        vid = torch.from_numpy(csr_rows(self.vh_ptr.numpy()))
        owner = torch.full((V,), -1, dtype=torch.long)
        owner[self.graph.triple_video] = self.graph.triple_user
        owner[self.val.videos] = self.val.users
        owner[self.test.videos] = self.test.users
        uh = torch.unique(owner[vid] * self.num_hashtag + self.vh_idx)
        users_per_tag = torch.bincount(uh % self.num_hashtag, minlength=self.num_hashtag)
        return dict(videos=V, users=self.num_user, hashtags=self.num_hashtag,
                    train_triples=len(self.train), val_rows=len(self.val), test_rows=len(self.test),
                    mean_hashtags_per_video=round(n_pos.mean().item(), 3),
                    share_hashtags_one_user=round((users_per_tag == 1).float().mean().item(), 4),
                    hashtags_unused_in_train=int((used_by == 0).sum()),
                    feature_dims=self.feature_dims, num_neg=self.val.num_neg)


def _load_features(path, num_video):
    blocks = []
    for name in FEATURE_FILES:
        fname = os.path.join(path, name)
        arr = load_npy(fname, mmap=True)
        if arr.dtype.kind != 'f':
            raise DataError(f'{fname}: wrong dtype {arr.dtype}; expected floating-point features')
        if arr.ndim != 2 or arr.shape[0] != num_video:
            raise DataError(f'{fname}: wrong shape {arr.shape}; expected [{num_video} videos (video_list.txt), dim]')
        blocks.append((fname, arr))
    dims = tuple(a.shape[1] for _, a in blocks)
    out = np.empty((num_video, sum(dims)), dtype=np.float32)
    col = 0
    for fname, arr in blocks:
        out[:, col:col + arr.shape[1]] = arr
        block = out[:, col:col + arr.shape[1]]
        if not np.isfinite(block).all():
            r = int(np.flatnonzero(~np.isfinite(block).all(1))[0])
            raise DataError(f'{fname}: NaN or inf feature in row {r} (video {r})')
        col += arr.shape[1]
    return torch.from_numpy(out), dims


def _load_tfidf(fname, num_video):
    """The optional sparse TF-IDF rows (``TFIDF_FILE``) as a scipy CSR matrix [V, terms], or None."""
    if not os.path.exists(fname):
        return None
    import scipy.sparse
    try:
        rows = scipy.sparse.load_npz(fname).tocsr()   # allow_pickle=False: plain arrays only
    except (ValueError, OSError, KeyError) as e:
        raise DataError(f'{fname}: not a sparse matrix written by scipy.sparse.save_npz ({e})') from None
    if rows.shape[0] != num_video:
        raise DataError(f'{fname}: {rows.shape[0]} rows but video_list.txt has {num_video} videos')
    if not np.isfinite(rows.data).all():
        raise DataError(f'{fname}: NaN or inf entries')
    return rows.astype(np.float32)


def _eval_split(fname, rows, U, H, V, vh_ptr, vh_idx, num_neg):
    """Validate val/test rows [user, video, negatives..., positives..., -1 pads] and build EvalSplit."""
    if rows.shape[1] < 3:
        raise DataError(f'{fname}: rows of {rows.shape[1]} ids; expected [user, video, negatives..., positives...]')
    if len(rows) == 0:
        raise DataError(f'{fname}: no rows')
    _check_range(rows[:, 0], 0, U, fname, 'user (column 0)')
    _check_range(rows[:, 1], U + H, U + H + V, fname, 'video (column 1)')
    cand = rows[:, 2:]
    _check_range(cand, U, U + H, fname, 'hashtag (columns 2+)', pad_ok=True)
    _check_trailing_pad(cand, fname)
    valid = cand != PAD
    lens = valid.sum(1)
    if num_neg is None:
        # the authors' rows hold all of the video's hashtags as positives: infer the negatives' count from that
        video = rows[:, 1] - U - H
        guess = lens - (vh_ptr[video + 1] - vh_ptr[video])
        num_neg = int(np.bincount(np.clip(guess, 0, None)).argmax())
    short = lens <= num_neg
    if short.any():
        r = int(np.flatnonzero(short)[0])
        what = 'no positive hashtag' if lens[r] == num_neg else f'only {lens[r]} candidates, fewer negatives than ' \
                                                                 f'the expected {num_neg}'
        raise DataError(f'{fname}: row {r} (user {rows[r, 0]}, video {rows[r, 1]}) has {what}')
    srt = np.sort(np.where(valid, cand, np.iinfo(np.int64).max), axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] != np.iinfo(np.int64).max)
    if dup.any():
        r = int(np.flatnonzero(dup.any(1))[0])
        h = srt[r, 1:][dup[r]][0]
        raise DataError(f'{fname}: row {r} lists hashtag {h} twice (duplicate candidate, or a positive among the '
                        f'negatives)')
    # a negative must not be one of the video's own hashtags (catches rows short of negatives, too)
    video = rows[:, 1] - U - H
    own = csr_rows(vh_ptr) * H + vh_idx
    neg_keys = video[:, None] * H + (cand[:, :num_neg] - U)
    clash = np.isin(neg_keys, own)
    if clash.any():
        r = int(np.flatnonzero(clash.any(1))[0])
        h = cand[r, :num_neg][clash[r]][0]
        raise DataError(f'{fname}: row {r}: hashtag {h} is among the first {num_neg} (negative) candidates but is '
                        f'one of the video\'s own hashtags (video_hashtag.npy): the row has fewer negatives than '
                        f'expected, or a positive among them')
    # a positive must be one of the video's own hashtags (catches a wrong --num_neg and truncated rows)
    pos_keys = video[:, None] * H + (cand[:, num_neg:] - U)
    stray = valid[:, num_neg:] & ~np.isin(pos_keys, own)
    if stray.any():
        r = int(np.flatnonzero(stray.any(1))[0])
        h = cand[r, num_neg:][stray[r]][0]
        raise DataError(f'{fname}: row {r}: hashtag {h} is read as a positive (after {num_neg} negatives) but is not '
                        f'one of the video\'s hashtags (video_hashtag.npy): the row is cut short, or --num_neg '
                        f'{num_neg} does not match the file\'s negatives per row')
    pos = np.zeros_like(valid)
    pos[:, num_neg:] = valid[:, num_neg:]
    return EvalSplit(users=torch.from_numpy(rows[:, 0].copy()),
                     videos=torch.from_numpy(rows[:, 1] - U - H),
                     candidates=torch.from_numpy(np.where(valid, cand - U, 0)),
                     pos_mask=torch.from_numpy(pos), valid=torch.from_numpy(valid), num_neg=num_neg)


def build_graph(train, U, H, V):
    """Distinct (user, hashtag) pairs and the group of triples behind each, sorted so groups are contiguous."""
    u, v, h = train.T
    pair_key = u * H + h
    order = np.lexsort((v, pair_key))
    u, v, h, pair_key = u[order], v[order], h[order], pair_key[order]
    keys, triple_pair, counts = np.unique(pair_key, return_inverse=True, return_counts=True)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    return Graph(U, H, V, t(u), t(v), t(h), t(triple_pair), t(keys // H), t(keys % H), t(counts))


def fingerprints(path, edge=1 << 20):
    """(fingerprint, legacy fingerprint) of a dataset folder, from one pass over its files: a short hash of every file
    a model reads, the name lists, the id files, the TF-IDF rows and the posts' texts (``POSTS_FILE``) whole, the
    (large) feature files by their size and their first and last MiB. A dataset regenerated or re-imported under the
    same name gets another fingerprint; a copy of the folder keeps it. The legacy one is the fingerprint of before
    2026-12-08, without ``POSTS_FILE`` (hashed last, so the legacy one is the hash before it), which checkpoints and
    sweep records of that time carry (``matches`` accepts either)."""
    import hashlib
    h = hashlib.sha1()
    legacy = None
    for name in LIST_FILES + ID_FILES + (TFIDF_FILE,) + FEATURE_FILES + (POSTS_FILE,):
        if name == POSTS_FILE:
            legacy = h.hexdigest()[:16]
        fname = os.path.join(path, name)
        if not os.path.exists(fname):
            continue
        size = os.path.getsize(fname)
        h.update(f'{name}:{size}:'.encode())
        with open(fname, 'rb') as f:
            if name not in FEATURE_FILES or size <= 2 * edge:
                for chunk in iter(lambda: f.read(1 << 22), b''):
                    h.update(chunk)
            else:
                h.update(f.read(edge))
                f.seek(size - edge)
                h.update(f.read(edge))
    return h.hexdigest()[:16], legacy


def fingerprint(path, legacy=False):
    """The fingerprint of a dataset folder (``fingerprints``), or with ``legacy`` the one of before 2026-12-08."""
    return fingerprints(path)[1 if legacy else 0]


def matches(recorded, path, known=None):
    """Whether a fingerprint recorded with a checkpoint or a sweep record is that of the folder ``path``: its current
    one, or the legacy one of a folder whose records predate it. ``known``: the folder's ``fingerprints``, when the
    caller has them (else they are computed)."""
    if recorded is None:
        return True
    return recorded in (known or fingerprints(path))


def load_dataset(path, allow_pickle=False, num_neg=None, verbose=True):
    """Read and validate a dataset folder; see the module docstring and Data/README.md."""
    if not os.path.isdir(path):
        raise DataError(f'{path}: no such dataset folder')
    for name in LIST_FILES + FEATURE_FILES + ID_FILES:
        if not os.path.exists(os.path.join(path, name)):
            raise DataError(f'{os.path.join(path, name)}: missing file')
    user_names, hashtag_names, video_names = (read_names(os.path.join(path, n)) for n in LIST_FILES)
    U, H, V = len(user_names), len(hashtag_names), len(video_names)
    for n, names in zip(LIST_FILES, (user_names, hashtag_names, video_names)):
        if not names:
            raise DataError(f'{os.path.join(path, n)}: empty list')
        if len(set(names)) != len(names):
            seen = set()
            dup = next(x for x in names if x in seen or seen.add(x))
            raise DataError(f'{os.path.join(path, n)}: the name {dup!r} is listed twice (names must be unique)')
    features, dims = _load_features(path, V)
    text_tfidf = _load_tfidf(os.path.join(path, TFIDF_FILE), V)

    fname = os.path.join(path, 'video_hashtag.npy')
    vh = read_padded(fname, allow_pickle, 'video hashtags')
    if len(vh) != V:
        raise DataError(f'{fname}: {len(vh)} rows but video_list.txt has {V} videos')
    _check_range(vh, U, U + H, fname, 'hashtag', pad_ok=True)
    _check_trailing_pad(vh, fname)
    vh_ptr, vh_idx = padded_to_csr(vh)
    vh_idx = vh_idx - U
    if (np.diff(vh_ptr) == 0).any():
        r = int(np.flatnonzero(np.diff(vh_ptr) == 0)[0])
        raise DataError(f'{fname}: video {r} ({video_names[r]}) has no hashtag')

    fname = os.path.join(path, 'train.npy')
    train = read_train(fname, allow_pickle)
    _check_range(train[:, 0], 0, U, fname, 'user (column 0)')
    _check_range(train[:, 1], U + H, U + H + V, fname, 'video (column 1)')
    _check_range(train[:, 2], U, U + H, fname, 'hashtag (column 2)')
    train = np.unique(train - np.array([0, U + H, U]), axis=0)   # local ids, duplicate rows dropped

    splits = {}
    for name in ('val', 'test'):
        fname = os.path.join(path, f'{name}.npy')
        rows = read_padded(fname, allow_pickle, 'rows of ids')
        # each file's negatives per row from that file alone (or --num_neg)
        splits[name] = _eval_split(fname, rows, U, H, V, vh_ptr, vh_idx, num_neg)
    data = PHRData(path=path, num_user=U, num_hashtag=H, num_video=V, features=features, feature_dims=dims,
                   train=torch.from_numpy(train), graph=build_graph(train, U, H, V),
                   vh_ptr=torch.from_numpy(vh_ptr), vh_idx=torch.from_numpy(vh_idx),
                   train_hashtags=torch.from_numpy(np.unique(train[:, 2])),
                   val=splits['val'], test=splits['test'],
                   user_names=user_names, hashtag_names=hashtag_names, video_names=video_names,
                   text_tfidf=text_tfidf, **dict(zip(('fingerprint', 'fingerprint_ids'), fingerprints(path))))
    if verbose:
        print(f'data: {path}: {U:,} users, {H:,} hashtags, {V:,} videos, {len(train):,} training triples, '
              f'{len(data.val):,} val / {len(data.test):,} test rows of {data.val.num_neg}'
              f'{"" if data.test.num_neg == data.val.num_neg else f" / {data.test.num_neg}"} negatives, '
              f'features {"+".join(map(str, dims))}')
    return data


def convert_folder(path):
    """Rewrite the authors' pickled files of a folder in the safe integer form; originals kept as *.pickled.npy."""
    for name in ID_FILES:
        fname = os.path.join(path, name)
        arr = load_npy(fname, allow_pickle=True)
        if arr.dtype != object:
            print(f'{fname}: already in the integer form')
            continue
        out = read_train(fname, True) if name == 'train.npy' else ragged_to_padded(arr.reshape(-1), fname)
        os.replace(fname, fname[:-4] + '.pickled.npy')
        save_npy_atomic(fname, out)
        print(f'{fname}: converted to int64 {out.shape} (original kept as {name[:-4]}.pickled.npy)')
