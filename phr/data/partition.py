"""Split raw posts into the authors' train/val/test files (SPEC §1), reproducibly.

Input folder (the authors' raw layout):
    user_list.txt, hashtag_list.txt, video_list.txt   one name per line
    video_info.txt                                    line i = video i: ``user;h1:h2:...``
                                                      (user id in [0, U), hashtag ids global in [U, U+H))
Output, in the same folder (see Data/README.md):
    video_hashtag.npy, train.npy, val.npy, test.npy

Per user, ``int(0.8 * n)`` of their videos go to train and the rest is halved into val (``int(rest / 2)``) and
test (the remainder), as the authors' ``Data_Partition.py`` did. Every val/test row gets ``--num_neg`` negatives
drawn without replacement from all hashtags minus the video's own.

    python scripts/partition.py Data/mydata --seed 2019
    python scripts/partition.py Data/mydata --legacy      # the authors' pickled object arrays instead
"""
import argparse
import os
import sys

import numpy as np

from data_load import DataError, count_lines, csr_gather, csr_pad, csr_rows, save_npy_atomic

TRAIN_RATIO = 0.8
RAW_FILE = 'video_info.txt'


def read_raw(path, num_user, num_hashtag, num_video):
    """Parse ``video_info.txt`` into (user per video [V], CSR ptr [V+1], global hashtag ids [nnz])."""
    fname = os.path.join(path, RAW_FILE)
    if not os.path.exists(fname):
        raise DataError(f'{fname}: missing file (one line per video: "user;h1:h2:...")')
    users = np.empty(num_video, dtype=np.int64)
    lengths = np.empty(num_video, dtype=np.int64)
    tags = []
    i = -1
    with open(fname) as f:
        for i, line in enumerate(f):
            if i >= num_video:
                raise DataError(f'{fname}: more lines than video_list.txt ({num_video})')
            try:
                user, hashtags = line.rstrip('\n').split(';')
                ids = [int(h) for h in hashtags.split(':') if h != '']
                users[i] = int(user)
            except ValueError:
                raise DataError(f'{fname}: line {i + 1} is not "user;h1:h2:...": {line.strip()[:80]!r}') from None
            if not ids:
                raise DataError(f'{fname}: line {i + 1} (video {i}) has no hashtag')
            lengths[i] = len(ids)
            tags.extend(ids)
    if i + 1 != num_video:
        raise DataError(f'{fname}: {i + 1} lines but video_list.txt has {num_video}')
    tags = np.asarray(tags, dtype=np.int64)
    if users.min() < 0 or users.max() >= num_user:
        bad = int(np.flatnonzero((users < 0) | (users >= num_user))[0])
        raise DataError(f'{fname}: line {bad + 1}: user id {users[bad]} outside [0, {num_user})')
    lo, hi = num_user, num_user + num_hashtag
    if tags.min() < lo or tags.max() >= hi:
        bad = tags[(tags < lo) | (tags >= hi)][0]
        raise DataError(f'{fname}: hashtag id {bad} outside the hashtag range [{lo}, {hi})')
    ptr = np.zeros(num_video + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    # one video listing the same hashtag twice is a duplicate edge, not two positives
    row = np.repeat(np.arange(num_video), lengths)
    key = np.unique(row * (hi + 1) + tags)
    row, tags = key // (hi + 1), key % (hi + 1)
    lengths = np.bincount(row, minlength=num_video)
    np.cumsum(lengths, out=ptr[1:])
    return users, ptr, tags


def split_videos(users, num_user, rng):
    """Per user: shuffle their videos, first int(0.8 n) -> train, then int(rest/2) -> val, rest -> test.

    Returns a code per video: 0 train, 1 val, 2 test.
    """
    num_video = len(users)
    perm = rng.permutation(num_video)
    order = perm[np.argsort(users[perm], kind='stable')]      # grouped by user, random within user
    counts = np.bincount(users, minlength=num_user)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(num_video) - np.repeat(starts, counts)   # rank of each video within its user
    n = np.repeat(counts, counts)
    n_train = (n * TRAIN_RATIO).astype(np.int64)
    n_val = (n - n_train) // 2
    code_sorted = np.where(rank < n_train, 0, np.where(rank < n_train + n_val, 1, 2))
    code = np.empty(num_video, dtype=np.int64)
    code[order] = code_sorted
    return code


def sample_negatives(pos_ptr, pos_tags, rows, num_hashtag, offset, num_neg, rng, chunk=2048):
    """``num_neg`` distinct hashtags per row, none of them one of that row's positives.

    pos_ptr/pos_tags: CSR of positives per video (global ids); rows: the video of each output row.
    Vectorised: per chunk of rows, random keys over all hashtags, positives pushed to +inf, argpartition.
    """
    out = np.empty((len(rows), num_neg), dtype=np.int64)
    for s in range(0, len(rows), chunk):
        vids = rows[s:s + chunk]
        keys = rng.random((len(vids), num_hashtag), dtype=np.float32)
        r, idx = csr_gather(pos_ptr, pos_tags, vids)
        keys[r, idx - offset] = np.inf
        pick = np.argpartition(keys, num_neg - 1, axis=1)[:, :num_neg]
        # argpartition leaves the first num_neg in an arbitrary order: order them by their random key
        pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(keys, pick, 1), axis=1), 1)
        out[s:s + len(vids)] = pick + offset
    return out


def partition(path, seed=2019, num_neg=1000, legacy=False, verbose=True, split=None):
    """Write video_hashtag/train/val/test .npy files into ``path``. Returns a dict of counts.

    ``split``: a given split code per video (0 train, 1 val, 2 test) instead of the authors' 80/10/10.
    """
    names = {}
    for kind in ('user', 'hashtag', 'video'):
        fname = os.path.join(path, f'{kind}_list.txt')
        if not os.path.exists(fname):
            raise DataError(f'{fname}: missing file')
        names[kind] = count_lines(fname)
    U, H, V = names['user'], names['hashtag'], names['video']
    users, ptr, tags = read_raw(path, U, H, V)
    max_pos = int(np.diff(ptr).max())
    if num_neg is None:
        num_neg = 1000
    if num_neg > H - max_pos:
        adapted = H - max_pos
        if verbose:
            print(f'partition: only {H} hashtags and up to {max_pos} per video: '
                  f'--num_neg lowered from {num_neg} to {adapted}')
        num_neg = adapted
    if num_neg < 1:
        raise DataError(f'{path}: too few hashtags ({H}) to draw any negative')
    rng = np.random.default_rng(seed)
    code = split_videos(users, U, rng)   # drawn even with a given split, so the negatives' stream is the same
    if split is not None:
        code = np.asarray(split, dtype=np.int64)
        if code.shape != (V,) or not np.isin(code, (0, 1, 2)).all():
            raise DataError(f'{path}: a given split needs one code in (0, 1, 2) per video ({V})')

    for c, name in ((1, 'val'), (2, 'test')):
        if not (code == c).any():
            raise DataError(f'{path}: the split left no {name} post; the authors\' 80/10/10 per-author split needs '
                            f'authors with at least 6 posts for a val post (raise the data, or lower --min_uses)')
    vid_of_tag = csr_rows(ptr)
    is_train = code[vid_of_tag] == 0
    train = np.stack([users[vid_of_tag[is_train]], vid_of_tag[is_train] + U + H, tags[is_train]], 1)

    splits = {}
    for name, c in (('val', 1), ('test', 2)):
        vids = np.flatnonzero(code == c)
        neg = sample_negatives(ptr, tags, vids, H, U, num_neg, rng)
        splits[name] = (vids, neg)

    if legacy:
        vh_lists = [tags[ptr[v]:ptr[v + 1]] for v in range(V)]
        # the authors' pickled form: ((user, video), hashtag) rows, ragged object rows
        vh = np.empty(V, dtype=object)
        vh[:] = [list(map(int, t)) for t in vh_lists]
        tr = np.empty((len(train), 2), dtype=object)
        tr[:, 0] = list(zip(train[:, 0].tolist(), train[:, 1].tolist()))
        tr[:, 1] = train[:, 2].tolist()
        save_npy_atomic(os.path.join(path, 'video_hashtag.npy'), vh)
        save_npy_atomic(os.path.join(path, 'train.npy'), tr)
        for name, (vids, neg) in splits.items():
            rows = np.empty(len(vids), dtype=object)
            rows[:] = [[int(users[v]), int(v + U + H)] + neg[i].tolist() + vh_lists[v].tolist()
                       for i, v in enumerate(vids)]
            save_npy_atomic(os.path.join(path, f'{name}.npy'), rows)
    else:
        save_npy_atomic(os.path.join(path, 'video_hashtag.npy'), csr_pad(ptr, tags))
        save_npy_atomic(os.path.join(path, 'train.npy'), train)
        for name, (vids, neg) in splits.items():
            head = np.stack([users[vids], vids + U + H], 1)
            pos = csr_pad(ptr, tags, rows=vids, width=max_pos)
            save_npy_atomic(os.path.join(path, f'{name}.npy'), np.concatenate([head, neg, pos], 1))
    stats = dict(users=U, hashtags=H, videos=V, train_triples=len(train),
                 train_videos=int((code == 0).sum()), val_rows=len(splits['val'][0]),
                 test_rows=len(splits['test'][0]), num_neg=num_neg)
    if verbose:
        print('partition: ' + ', '.join(f'{k} {v:,}' for k, v in stats.items()))
    return stats


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('path', help='dataset folder holding the three list files and video_info.txt')
    p.add_argument('--seed', type=int, default=2019, help='makes the split and the negatives reproducible')
    p.add_argument('--num_neg', type=int, default=1000, help='negatives per val/test row (lowered if too few hashtags)')
    p.add_argument('--legacy', action='store_true', help="write the authors' pickled object arrays")
    return p


def run(args):
    try:
        partition(args.path, seed=args.seed, num_neg=args.num_neg, legacy=args.legacy)
    except DataError as e:
        sys.exit(f'error: {e}')
