"""Generate a dataset with the shape and statistics of the authors' YFCC100M / Instagram data, then partition it.

The authors' processed data cannot be downloaded, so this writes the same raw input a real crawl gives
(three list files + ``video_info.txt`` + three feature files) and runs ``scripts/partition.py`` on it: generated and
real data share one path. Every knob is documented in Data/README.md.

    python scripts/generate.py --preset demo                       # -> Data/demo (seconds)
    python scripts/generate.py --preset yfcc100m                   # -> Data/yfcc100m (134,992 videos)
    python scripts/generate.py --preset instagram --scale 0.1      # -> Data/instagram_0.1

What the data carries (each with its knob):
  * topics: every video has one latent topic; hashtags are grouped into concepts, concepts into topics;
  * long-tail popularity of concepts (``--zipf``) and of synonyms inside a concept;
  * personal vocabulary: a concept has ``--synonyms`` near-synonymous hashtags and each user has a habitual one,
    used with probability ``--personal`` (else a popularity draw), so the user matters beyond the content;
  * content visible in all three feature blocks with different signal strength (``--snr_text/visual/audio``);
  * heavy-tailed videos per user (``--user_sigma``), at least ``--min_videos`` each (6 = at least one val and one
    test video under the 80/10/10 split);
  * hashtags per video: 1 + Poisson(``--tags_per_video`` - 1), plus ``--noise_tags`` off-topic tags.
"""
import argparse
import os
import sys
import time

import numpy as np
from numpy.lib.format import open_memmap

from data_load import DataError, FEATURE_FILES
from phr.data.partition import RAW_FILE, partition

PRESETS = {
    # name: (videos, users, hashtags) -- the authors' table for the two real datasets
    'yfcc100m': (134992, 8126, 23054),
    'instagram': (48888, 2303, 12194),
    # small enough for a one-minute CPU run, with > 1,000 hashtags so rows carry 1,000 real negatives
    'demo': (4000, 200, 1100),
}
FEATURE_DIMS = (2048, 128, 100)  # visual, acoustic, textual (FEATURE_FILES order)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', choices=sorted(PRESETS), default='demo')
    p.add_argument('--scale', type=float, default=1.0, help='multiply videos, users and hashtags by this')
    p.add_argument('--out', default=None, help='output folder (default Data/<preset>[_<scale>])')
    p.add_argument('--seed', type=int, default=2019, help='the whole dataset is a function of this seed')
    p.add_argument('--num_neg', type=int, default=1000, help='negatives per val/test row')
    p.add_argument('--legacy', action='store_true', help="write the authors' pickled object arrays")
    p.add_argument('--overwrite', action='store_true',
                   help='replace the generated dataset already in --out (an imported one is never replaced)')
    g = p.add_argument_group('structure knobs (Data/README.md)')
    g.add_argument('--hashtags_per_topic', type=int, default=60, help='sets the number of topics: H / this')
    g.add_argument('--synonyms', type=int, default=4, help='near-synonymous hashtags per concept')
    g.add_argument('--personal', type=float, default=0.7,
                   help="probability that a user writes their own habitual synonym of a concept")
    g.add_argument('--zipf', type=float, default=1.0, help='exponent of the long tail of concept popularity')
    g.add_argument('--topics_per_user', type=int, default=3, help='each user posts about this many topics')
    g.add_argument('--tags_per_video', type=float, default=5.0,
                   help='mean tag draws per video (repeats merge, so the mean kept is lower)')
    g.add_argument('--noise_tags', type=float, default=0.1, help='probability that a tag is off-topic')
    g.add_argument('--user_sigma', type=float, default=1.0, help='log-normal spread of videos per user')
    g.add_argument('--min_videos', type=int, default=6, help='minimum videos per user')
    g.add_argument('--snr_text', type=float, default=4.0, help='signal strength of the textual block')
    g.add_argument('--snr_visual', type=float, default=2.0, help='signal strength of the visual block')
    g.add_argument('--snr_audio', type=float, default=1.0, help='signal strength of the acoustic block')
    return p


def _segment_sample(rng, cdf, seg_start, seg_end, n):
    """For each i, an index in [seg_start[i], seg_end[i]) drawn with weights given by the global cumsum ``cdf``."""
    lo = np.where(seg_start > 0, cdf[seg_start - 1], 0.0)
    hi = cdf[seg_end - 1]
    r = lo + rng.random(n) * (hi - lo)
    return np.minimum(np.searchsorted(cdf, r, side='right'), seg_end - 1)


def generate(args):
    V0, U0, H0 = PRESETS[args.preset]
    V, U, H = (max(1, int(round(x * args.scale))) for x in (V0, U0, H0))
    if V < U * args.min_videos:
        raise DataError(f'--scale {args.scale}: {V} videos cannot give {U} users {args.min_videos} videos each')
    out = output_folder(args)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()

    # --- hashtags: concept = hashtag // synonyms, concepts dealt to topics, long-tail concept weights
    S = args.synonyms
    K = -(-H // S)                                   # concepts
    T = max(2, H // args.hashtags_per_topic)         # topics
    concept_topic = rng.permutation(np.arange(K) % T)
    concept_w = 1.0 / (1.0 + rng.permutation(K)) ** args.zipf
    order = np.argsort(concept_topic, kind='stable')  # concepts grouped by topic
    topic_end = np.searchsorted(concept_topic[order], np.arange(T), side='right')
    topic_start = np.concatenate([[0], topic_end[:-1]])
    concept_cdf = np.cumsum(concept_w[order])
    topic_w = np.bincount(concept_topic, weights=concept_w, minlength=T)
    syn_w = 1.0 / (1.0 + np.arange(S)) ** 1.5         # global popularity of the synonyms of a concept
    syn_cdf = np.cumsum(syn_w / syn_w.sum())
    concept_size = np.minimum(S, H - np.arange(K) * S)

    # --- users: heavy-tailed video counts (sum exactly V), a few favourite topics, a habitual synonym per concept
    w = rng.lognormal(0.0, args.user_sigma, U)
    counts = args.min_videos + rng.multinomial(V - U * args.min_videos, w / w.sum())
    M = args.topics_per_user
    fav = rng.choice(T, size=(U, M), p=topic_w / topic_w.sum())
    fav_p = rng.dirichlet(np.ones(M), size=U)
    habit_seed = rng.integers(1 << 31)

    # --- videos: owner (shuffled order), topic, tags
    video_user = rng.permutation(np.repeat(np.arange(U), counts))
    pick = (rng.random(V)[:, None] > np.cumsum(fav_p, 1)[video_user]).sum(1).clip(max=M - 1)
    video_topic = fav[video_user, pick]
    n_tags = np.minimum(1 + rng.poisson(args.tags_per_video - 1, V), 15)
    tv = np.repeat(np.arange(V), n_tags)                          # video of each tag draw
    t_topic = video_topic[tv]
    off = rng.random(len(tv)) < args.noise_tags
    t_topic[off] = rng.choice(T, size=int(off.sum()), p=topic_w / topic_w.sum())
    concept = order[_segment_sample(rng, concept_cdf, topic_start[t_topic], topic_end[t_topic], len(tv))]
    user = video_user[tv]
    # habitual synonym of (user, concept): a fixed hash, so no U x K table is held in memory
    habit = ((user * 2654435761 + concept * 40503 + habit_seed) % 1000003) % S
    popular = np.searchsorted(syn_cdf, rng.random(len(tv)), side='right')
    variant = np.where(rng.random(len(tv)) < args.personal, habit, popular) % concept_size[concept]
    tag = concept * S + variant
    # every hashtag in the list is used at least once: unused ones go to a random video of their topic
    unused = np.flatnonzero(np.bincount(tag, minlength=H) == 0)
    if len(unused):
        vt_order = np.argsort(video_topic, kind='stable')
        vt_end = np.searchsorted(video_topic[vt_order], np.arange(T), side='right')
        vt_start = np.concatenate([[0], vt_end[:-1]])
        ut = concept_topic[unused // S]
        has = vt_end[ut] > vt_start[ut]
        slot = vt_start[ut] + (rng.random(len(unused)) * (vt_end[ut] - vt_start[ut])).astype(np.int64)
        host = np.where(has, vt_order[np.minimum(slot, V - 1)], rng.integers(0, V, len(unused)))
        tv, tag = np.concatenate([tv, host]), np.concatenate([tag, unused])
    key = np.unique(tv * H + tag)                                   # distinct (video, hashtag), sorted by video
    tv, tag = key // H, key % H

    # --- list files and raw lines (hashtag ids global, as the authors' raw file)
    with open(os.path.join(out, 'user_list.txt'), 'w') as f:
        f.write(''.join(f'user_{i:05d}\n' for i in range(U)))
    with open(os.path.join(out, 'hashtag_list.txt'), 'w') as f:
        f.write(''.join(f'#t{concept_topic[j // S]:03d}_c{j // S:05d}_{j % S}\n' for j in range(H)))
    with open(os.path.join(out, 'video_list.txt'), 'w') as f:
        f.write(''.join(f'video_{i:06d}\n' for i in range(V)))
    ptr = np.searchsorted(tv, np.arange(V + 1))
    tags_str = (tag + U).astype(str)
    with open(os.path.join(out, RAW_FILE), 'w') as f:
        f.write(''.join(f'{video_user[i]};{":".join(tags_str[ptr[i]:ptr[i + 1]])}\n' for i in range(V)))

    # --- features: topic + mean of the video's concept directions, plus noise; rows L2-normalised ("_normal")
    # snr: length of the (unit-direction) signal against per-dimension noise of std 1, i.e. the signal-to-noise
    # ratio a matched filter for one direction sees; the text block is clearest, the acoustic block weakest
    concept_of_tag = tag // S
    n_per_video = np.diff(ptr)
    snrs = dict(zip(FEATURE_FILES, (args.snr_visual, args.snr_audio, args.snr_text)))
    for name, dim in zip(FEATURE_FILES, FEATURE_DIMS):
        frng = np.random.default_rng([args.seed, dim])
        topic_dir = frng.standard_normal((T, dim), dtype=np.float32) / np.sqrt(dim)
        concept_dir = frng.standard_normal((K, dim), dtype=np.float32) / np.sqrt(dim)
        arr = open_memmap(os.path.join(out, name + '.tmp.npy'), mode='w+', dtype=np.float32, shape=(V, dim))
        chunk = 8192
        for s in range(0, V, chunk):
            e = min(V, s + chunk)
            sig = 0.6 * topic_dir[video_topic[s:e]]
            a, b = ptr[s], ptr[e]
            # every video has >= 1 tag and tags are sorted by video: one reduceat per chunk
            cmean = np.add.reduceat(concept_dir[concept_of_tag[a:b]], ptr[s:e] - a, axis=0)
            sig += 0.8 * cmean / n_per_video[s:e, None]
            x = snrs[name] * sig + frng.standard_normal((e - s, dim), dtype=np.float32)
            arr[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        arr.flush()
        del arr
        os.replace(os.path.join(out, name + '.tmp.npy'), os.path.join(out, name))
    t_gen = time.perf_counter() - t0
    print(f'generate: {out}: {V:,} videos, {U:,} users, {H:,} hashtags, {T} topics, {K:,} concepts, '
          f'{len(tag):,} video-hashtag pairs ({len(tag) / V:.2f} per video) in {t_gen:.1f}s')
    partition(out, seed=args.seed, num_neg=args.num_neg, legacy=args.legacy)
    print(f'generate: done in {time.perf_counter() - t0:.1f}s')
    return out


def check_args(args):
    """One line per bad knob, before any work."""
    import math
    ints = {'num_neg': 1, 'hashtags_per_topic': 1, 'synonyms': 1, 'topics_per_user': 1, 'min_videos': 1}
    for k, lo in ints.items():
        if getattr(args, k) < lo:
            raise DataError(f'--{k} must be at least {lo}, got {getattr(args, k)}')
    for k in ('scale', 'tags_per_video', 'personal', 'zipf', 'noise_tags', 'user_sigma', 'snr_text', 'snr_visual',
              'snr_audio'):
        if not math.isfinite(getattr(args, k)):
            raise DataError(f'--{k} must be a finite number, got {getattr(args, k)}')
    if args.scale <= 0:
        raise DataError(f'--scale must be positive, got {args.scale}')
    if args.tags_per_video < 1:
        raise DataError(f'--tags_per_video must be at least 1 (the mean number of hashtags per video), got '
                        f'{args.tags_per_video}')
    for k in ('personal', 'noise_tags'):
        if not 0 <= getattr(args, k) <= 1:
            raise DataError(f'--{k} is a probability, between 0 and 1; got {getattr(args, k)}')
    for k in ('zipf', 'user_sigma'):
        if getattr(args, k) < 0:
            raise DataError(f'--{k} cannot be negative, got {getattr(args, k)}')
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise DataError(f'--out {args.out}: is a file, expected a folder')
    check_out(output_folder(args), getattr(args, 'overwrite', False))


IMPORT_MARKERS = ('posts.jsonl', 'text_model.npz', 'FeatureText_tfidf.npz')   # files only an import writes


def output_folder(args):
    return args.out or os.path.join('Data', args.preset + ('' if args.scale == 1.0 else f'_{args.scale:g}'))


def check_out(out, overwrite):
    """The generator writes a folder of its own: an existing dataset there is replaced only with ``overwrite``, an
    imported one never (its posts and TF-IDF files would stay beside generated lists), and no file is written through
    a link."""
    if not os.path.isdir(out):
        return
    names = set(os.listdir(out))
    links = sorted(n for n in names if os.path.islink(os.path.join(out, n)))
    if links:
        raise DataError(f'--out {out}: {", ".join(links)} is a link; the generator never writes through one: remove '
                        f'it or generate into another folder')
    imported = sorted(names & set(IMPORT_MARKERS))
    if imported:
        raise DataError(f'--out {out}: holds an imported dataset ({", ".join(imported)}); generate into another '
                        f'folder (an import is never overwritten by generated data)')
    if (names & {'test.npy', 'train.npy', 'video_hashtag.npy', 'user_list.txt'}) and not overwrite:
        raise DataError(f'--out {out}: a dataset is already there; pass --overwrite to replace it, or generate into '
                        f'another folder')


def run(args):
    try:
        check_args(args)
        generate(args)
    except DataError as e:
        sys.exit(f'error: {e}')
