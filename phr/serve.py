"""Top-K hashtags for one author and one post, from a trained checkpoint.

    python scripts/recommend.py --checkpoint runs/GCN_PHR/best.pt --data_path Data/demo --author user_00075 --video video_000001
    python scripts/recommend.py --checkpoint runs/rtweet/GCN_PHR_seed0/best.pt --data_path Data/rtweet --author tidyversetweets \\
        --text "New package release for tidy data frames"                # a new post, by its text
    python scripts/recommend.py ... --author X --features post.npy               # a new post, by its feature vector

The post is a video of the dataset (``--video``, a name from video_list.txt: its true hashtags are marked with *),
or a new post: ``--text`` (vectorised with the dataset's ``text_model.npz``, written by scripts/import_posts.py: the
dense text block, and the sparse TF-IDF row for kNN / TagMix trained on those; the visual and acoustic blocks are
zeros) or ``--features`` (a .npy vector of the dataset's full feature width).
The model and its sizes come from the checkpoint's own model_args (``checkpoint.load_checkpoint``, shared with resume). An author not in user_list.txt gets the
global popularity ranking, said so in the output (``--strict``: an error instead).
"""
import argparse
import json
import os

import numpy as np
import torch

from data_load import POSTS_FILE, DataError, load_dataset, load_npy
from phr.data.text import TEXT_MODEL, load_text_model, new_post_tfidf, text_features
from phr.core.base import Posts
from phr.models.signals import hashtag_popularity
from phr.training.checkpoint import CheckpointError, load_checkpoint
from phr.util.runtime import resolve_device


def post_features(args, data):
    """The feature row of a new post: [1, F]."""
    F = data.features.size(1)
    if args.features:
        arr = load_npy(args.features)
        if arr.dtype.kind not in 'fiu' or not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == 1)):
            raise DataError(f'{args.features}: a {arr.dtype} array of shape {list(arr.shape)}; expected one post\'s '
                            f'feature vector, [{F}] or [1, {F}] numbers')
        vec = arr.astype(np.float32).reshape(-1)
        if vec.shape[0] != F:
            raise DataError(f'{args.features}: {vec.shape[0]} values; this dataset\'s posts have {F} '
                            f'({"+".join(map(str, data.feature_dims))})')
        if not np.isfinite(vec).all():
            raise DataError(f'{args.features}: NaN or inf in the feature vector')
        return torch.from_numpy(vec).unsqueeze(0)
    model = load_text_model(os.path.join(data.path, TEXT_MODEL))
    text = text_features([args.text], model)
    if text.shape[1] != data.feature_dims[-1]:
        raise DataError(f'{data.path}: text model gives {text.shape[1]} dims, the text block has '
                        f'{data.feature_dims[-1]}')
    row = torch.zeros(1, F)
    row[0, F - text.shape[1]:] = torch.from_numpy(text[0])
    if not row.any():
        print('note: no word of this text is in the dataset\'s vocabulary: the post\'s features are all zero')
    return row


def recommend(model, user, post, k=10):
    """(hashtag ids [k], scores [k]) for a user id and one post (``Posts`` of one: a dataset post, or a new one)."""
    device = next(iter(model.buffers())).device
    if post.is_new:
        post = Posts(features=post.features.to(device), tfidf=post.tfidf, texts=post.texts)
    else:
        post = Posts(ids=post.ids.to(device))
    ids, scores = model.recommend(torch.tensor([user], device=device), post, k)
    return ids[0].cpu(), scores[0].cpu()


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True, help='best.pt / last.pt written by train.py')
    p.add_argument('--data_path', required=True, help='the dataset folder the checkpoint was trained on')
    p.add_argument('--author', required=True, help='a name from user_list.txt')
    post = p.add_mutually_exclusive_group(required=True)
    post.add_argument('--video', help='a post of the dataset, by its name in video_list.txt')
    post.add_argument('--text', help='a new post\'s text (datasets made by scripts/import_posts.py)')
    post.add_argument('--features', help='a new post\'s feature vector, .npy of the full feature width')
    p.add_argument('--topk', type=int, default=10, help='how many hashtags to print')
    p.add_argument('--strict', action='store_true', help='an unknown author is an error, not a popularity fallback')
    p.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:N'")
    p.add_argument('--allow_pickle', action='store_true', help="read the authors' pickled .npy files")
    return p


def run(args):
    if args.topk < 1:
        raise SystemExit(f'error: --topk must be positive, got {args.topk}')
    if args.features is not None and not os.path.isfile(args.features):
        raise SystemExit(f'error: --features {args.features}: no such file')
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    try:
        data = load_dataset(args.data_path, allow_pickle=args.allow_pickle, verbose=False)
        users = {n: i for i, n in enumerate(data.user_names)}
        video, true = None, set()
        if args.video is not None:
            videos = {n: i for i, n in enumerate(data.video_names)}
            if args.video not in videos:
                raise DataError(f'{os.path.join(args.data_path, "video_list.txt")}: no video named {args.video!r}')
            video = videos[args.video]
            true = set(data.vh_idx[data.vh_ptr[video]:data.vh_ptr[video + 1]].tolist())
        model, ckpt = load_checkpoint(args.checkpoint, data, device)   # checked even when it is not used below
        name = ckpt.get('model_name') or ckpt['config']['model_name']   # the registry's name (kNN, not its class)
        if args.author not in users:
            if args.strict:
                raise DataError(f'{os.path.join(args.data_path, "user_list.txt")}: no author named {args.author!r}')
            print(f'unknown author {args.author!r} (not in user_list.txt): falling back to global hashtag '
                  f'popularity in training; the post is not used')
            pop = hashtag_popularity(data)
            top = torch.topk(pop, min(args.topk, data.num_hashtag))
            ids, scores, how = top.indices, top.values, 'training uses'
        else:
            if args.video is not None:
                post = Posts(ids=torch.tensor([video]))
            else:
                # a new post: its feature row, and what a model that reads more of it needs (Posts.need_tfidf / texts)
                feats = post_features(args, data)
                if model.reads_tfidf and not args.text:   # kNN / TagMix / TagBlend with text=tfidf
                    raise DataError(f'{args.checkpoint}: this {name} compares posts by their TF-IDF '
                                    f'rows (text=tfidf), which a feature vector does not give; pass the post\'s '
                                    f'--text instead')
                if model.reads_text and not args.text:   # TagBlend's n-gram term reads the text
                    raise DataError(f'{args.checkpoint}: this {name} reads a new post\'s text (its '
                                    f'character n-gram term), which a feature vector does not give; pass the post\'s '
                                    f'--text instead, or a model built with --grams off')
                post = Posts(features=feats,
                             tfidf=new_post_tfidf(data, [args.text]) if model.reads_tfidf else None,
                             texts=[args.text] if args.text else None)
            ids, scores = recommend(model, users[args.author], post, args.topk)
            how = f'{name} score'
    except (DataError, CheckpointError) as e:
        raise SystemExit(f'error: {e}')
    what = f'video {args.video}' if args.video is not None else ('new post (text)' if args.text else
                                                                   'new post (features)')
    print(f'top-{len(ids)} hashtags for author {args.author}, {what}:')
    for rank, (h, s) in enumerate(zip(ids.tolist(), scores.tolist()), 1):
        mark = ' *' if h in true else ''
        print(f'{rank:3d}. {data.hashtag_names[h]:<30s} {how} {s:9.4f}{mark}')
    if args.video is not None:
        names = sorted(data.hashtag_names[h] for h in true)
        hits = len(true & set(ids.tolist()))
        print(f'true hashtags of {args.video}: {" ".join(names)} ({hits} of {len(true)} in the top {len(ids)}; '
              f'* marks them)')
        posts = os.path.join(args.data_path, POSTS_FILE)
        if os.path.exists(posts):
            with open(posts, encoding='utf-8', errors='replace') as f:
                for i, line in enumerate(f, 1):
                    try:
                        rec = json.loads(line)
                        pid, text = rec['post_id'], rec.get('text', '')
                    except (ValueError, TypeError, KeyError):
                        raise SystemExit(f'error: {posts}: line {i} is not a post record (JSON with post_id and '
                                         f'text); the recommendations above stand, the post\'s text is not shown '
                                         f'(re-import the dataset to rewrite the file)') from None
                    if pid == args.video:
                        print(f'text: {text!r}')
                        break
    return ids, scores
