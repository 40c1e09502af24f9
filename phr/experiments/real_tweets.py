"""Smoke test on real human tagging: fetch recorded Twitter API v1.1 responses, import, train, report.

    python scripts/real_tweets.py                       # fetch -> Data/rtweet_raw, import -> Data/rtweet, train, report
    python scripts/real_tweets.py --deb r-cran-rtweet_1.1.0+dfsg-1_all.deb     # a .deb downloaded by hand

Source: Debian's ``r-cran-rtweet`` package (MIT) ships the recorded API responses of rtweet's test suite (2022-23)
in ``usr/share/doc/r-cran-rtweet/tests/fixtures/``. The .deb is fetched with ``apt-get download`` (or, without
apt, from deb.debian.org) and only those fixtures are extracted, in Python (no dpkg, no R). The tweets are never
committed: they land in the git-ignored ``Data/``.

Then: ``scripts/import_posts.py`` (originals only, deduplicated, case-folded hashtags, authors with >= 2 tagged posts,
hashtags used >= 2 times), GCN-PHR trained with ``--seeds`` seeds, the two popularity floors, one table of
P/R/NDCG@10 (model selection on validation), and one ``scripts/recommend.py`` output for a held-out test tweet.
It is a few hundred tweets: a smoke test of the whole path on real data, not a benchmark.
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

import numpy as np


from phr.data import posts as import_posts
from phr import serve as recommend
from phr.training import run_folder
from data_load import load_dataset
from evaluation import best_by_validation
from phr import ROOT

PACKAGE = 'r-cran-rtweet'
DEB_URL = 'http://deb.debian.org/debian/pool/main/r/r-cran-rtweet/r-cran-rtweet_1.1.0+dfsg-1_all.deb'
FIXTURES = 'usr/share/doc/r-cran-rtweet/tests/fixtures/'


def download_deb(workdir):
    """Path of the package's .deb in ``workdir``: apt-get download, else a plain HTTP download."""
    if shutil.which('apt-get'):
        r = subprocess.run(['apt-get', 'download', PACKAGE], cwd=workdir, capture_output=True, text=True)
        debs = [f for f in os.listdir(workdir) if f.startswith(PACKAGE) and f.endswith('.deb')]
        if r.returncode == 0 and debs:
            return os.path.join(workdir, debs[0])
        print(f'apt-get download {PACKAGE} failed ({r.stderr.strip().splitlines()[-1:]}); trying {DEB_URL}')
    dst = os.path.join(workdir, os.path.basename(DEB_URL))
    try:
        urllib.request.urlretrieve(DEB_URL, dst)
    except OSError as e:
        raise SystemExit(f'error: could not download {PACKAGE} ({e}). Download the .deb by hand '
                         f'({DEB_URL}) and pass --deb PATH')
    return dst


def ar_members(data):
    """{name: bytes} of a Unix ar archive (a .deb is one)."""
    if not data.startswith(b'!<arch>\n'):
        raise SystemExit('error: not a .deb (ar) archive')
    out, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip('/')
        size = int(header[48:58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return out


def extract_fixtures(deb, dest):
    """Extract the recorded API responses of the .deb into ``dest``; returns how many files."""
    with open(deb, 'rb') as f:
        members = ar_members(f.read())
    data_name = next((n for n in members if n.startswith('data.tar')), None)
    if data_name is None:
        raise SystemExit(f'error: {deb}: no data.tar.* inside')
    os.makedirs(dest, exist_ok=True)
    n = 0
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode='r:*') as tar:
        for m in tar.getmembers():
            name = m.name.lstrip('./')
            if m.isfile() and name.startswith(FIXTURES) and '.json' in name:
                with tar.extractfile(m) as src, open(os.path.join(dest, os.path.basename(name)), 'wb') as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
    if n == 0:
        raise SystemExit(f'error: {deb}: no {FIXTURES}*.json* inside')
    return n


def fetch(raw_dir, deb=None):
    if os.path.isdir(raw_dir) and os.listdir(raw_dir):
        print(f'{raw_dir}: fixtures already here ({len(os.listdir(raw_dir))} files)')
        return
    with tempfile.TemporaryDirectory() as tmp:
        deb = deb or download_deb(tmp)
        n = extract_fixtures(deb, raw_dir)
    print(f'{raw_dir}: {n} recorded API responses extracted from {os.path.basename(deb)}')


def train(argv, run_dir):
    """``python train.py ARGV`` (its own process: nothing imports train.py) and the best-validation epoch of its log."""
    subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + argv, check=True)
    return best_by_validation(run_folder.read_metrics(run_dir))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--raw', default=os.path.join('Data', 'rtweet_raw'), help='where the fixtures go')
    p.add_argument('--out', default=os.path.join('Data', 'rtweet'), help='the imported dataset')
    p.add_argument('--deb', default=None, help='a downloaded r-cran-rtweet .deb (skips the download)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='training seeds of GCN-PHR')
    p.add_argument('--num_epoch', type=int, default=60)
    p.add_argument('--patience', type=int, default=20, help='6 val posts: selection is noisy, so wait longer')
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--min_posts', type=int, default=2)
    p.add_argument('--min_uses', type=int, default=2)
    p.add_argument('--save_dir', default=os.path.join('runs', 'rtweet'))
    p.add_argument('--device', default='auto')
    p.add_argument('--import_only', action='store_true', help='fetch and import, no training (scripts/tune.py)')
    return p


def run(args):

    fetch(args.raw, args.deb)
    stats = import_posts.run(import_posts.build_parser().parse_args(
        [args.raw, '--out', args.out, '--format', 'twitter', '--overwrite', '--min_posts', str(args.min_posts),
         '--min_uses', str(args.min_uses), '--seed', '2019']))
    if args.import_only:
        return stats
    common = ['--data_path', args.out, '--save_dir', args.save_dir, '--no_progress', '--device', args.device,
              '--overwrite']
    rows = {}
    for floor in ('popularity', 'user_popularity'):
        rows[floor] = [train(common + ['--model_name', floor], os.path.join(args.save_dir, floor))]
    runs = []
    for seed in args.seeds:
        run = f'GCN_PHR_seed{seed}'
        runs.append(train(common + ['--model_name', 'GCN_PHR', '--seed', str(seed), '--run_name', run,
                                    '--num_epoch', str(args.num_epoch), '--batch_size', str(args.batch_size),
                                    '--patience', str(args.patience)], os.path.join(args.save_dir, run)))
    rows['GCN_PHR'] = runs

    data = load_dataset(args.out, verbose=False)
    print(f'\nreal tweets (r-cran-rtweet fixtures): {stats["posts read"]:,} tweets read, '
          f'{stats["duplicates dropped"]:,} duplicates and {stats.get("retweets skipped", 0):,} retweets dropped, '
          f'{stats["posts kept"]:,} tagged posts kept from {stats["authors"]:,} authors, {stats["hashtags"]:,} '
          f'hashtags; {stats["train_videos"]} train / {stats["val_rows"]} val / {stats["test_rows"]} test posts, '
          f'{stats["num_neg"]} negatives per row')
    print(f'{"model":<16} {"val P@10":>9} {"val R@10":>9} {"val N@10":>9} {"test P@10":>10} {"test R@10":>10} '
          f'{"test N@10":>10}')
    for name, rs in rows.items():
        cells = []
        for split in ('val', 'test'):
            for m in ('precision@10', 'recall@10', 'ndcg@10'):
                v = np.array([r[split][m] for r in rs])
                cells.append(f'{v.mean():.3f}' + (f'±{v.std():.3f}' if len(v) > 1 else ''))
        label = name + (f' ({len(rs)} seeds)' if len(rs) > 1 else '')
        print(f'{label:<16} ' + ' '.join(f'{c:>9}' for c in cells))

    # one held-out tweet (the first test row), scored by the seed with the best validation R@10 (ties: NDCG@10)
    best = runs.index(best_by_validation(runs))
    ckpt = os.path.join(args.save_dir, f'GCN_PHR_seed{args.seeds[best]}', 'best.pt')
    i = 0
    user, video = data.user_names[data.test.users[i]], data.video_names[data.test.videos[i]]
    print(f'\npython scripts/recommend.py --checkpoint {ckpt} --data_path {args.out} --author {user} --video {video}')
    recommend.run(recommend.build_parser().parse_args(
        ['--checkpoint', ckpt, '--data_path', args.out, '--author', user, '--video', video, '--device', args.device]))
