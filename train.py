"""Train and evaluate GCN-PHR (or a variant / baseline) on one dataset folder.

    python train.py                                  # GCN-PHR on Data/demo (generated on first use), CPU or GPU
    python train.py --data_path Data/yfcc100m --l_r=0.001 --weight_decay=0.1 --batch_size=1024 --dim_latent=64 \
        --num_workers=30 --aggr_mode='mean' --scoring_mode='cat'      # the authors' README command
    python train.py --model_name UTM --num_epoch 20  # a baseline through the same loop
    python train.py --PATH_weight_load runs/GCN_PHR/last.pt          # resume: the run continues where it stopped
    python train.py --model_name GCN_PHR_plus --loss sampled_softmax --num_train_neg 8   # the extension (not the paper)
    torchrun --nproc_per_node 4 train.py --data_path Data/yfcc100m    # data-parallel (DDP), --batch_size stays global

One log line per epoch: training loss, validation and test P/R/NDCG@10, seconds. The checkpoint kept is the
epoch of best validation Recall@10, ties broken by validation NDCG@10 (never test); the test numbers reported
at the end are that epoch's.
Per-epoch metrics also go to <save_dir>/<run>/metrics.jsonl.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_load import DataError, csr_gather, csr_rows, load_dataset
from evaluation import evaluate, evaluate_rows, evaluate_variants
import model as model_lib
from model import (AGGR, MODELS, SCORING_MODES, CheckpointError, build_model, checkpoint_model_args,
                   hparams_from_flags, load_checkpoint)

DEMO_PATH = os.path.join('Data', 'demo')


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- the authors' flags (their README command runs verbatim)
    p.add_argument('--model_name', default='GCN_PHR', choices=tuple(MODELS),
                   help='; '.join(f'{name}: {spec.label}' for name, spec in MODELS.items()))
    p.add_argument('--data_path', default=DEMO_PATH, help='dataset folder in the authors\' layout (Data/README.md)')
    p.add_argument('--PATH_weight_load', default=None, help='checkpoint to resume from (model, optimiser, epoch)')
    p.add_argument('--PATH_weight_save', default=None,
                   help='where to keep the best-validation checkpoint (default <save_dir>/<run>/best.pt)')
    p.add_argument('--l_r', type=float, default=5e-3, help='Adam learning rate (the authors used 0.001)')
    p.add_argument('--weight_decay', type=float, default=0.1,
                   help="Adam weight decay of the weight matrices, the authors' value (against a loss summed over "
                        "the batch); id embeddings and biases are not decayed unless --decay_embeddings")
    p.add_argument('--batch_size', type=int, default=256, help='training triples per step (the authors used 1024)')
    p.add_argument('--dim_latent', type=int, default=64, help='size of every node vector')
    p.add_argument('--num_epoch', type=int, default=25, help='maximum number of epochs')
    p.add_argument('--num_workers', type=int, default=0,
                   help='DataLoader processes that draw the negatives (capped at the CPU count)')
    p.add_argument('--aggr_mode', default='mean', choices=tuple(AGGR), help='aggregation of neighbour messages')
    p.add_argument('--scoring_mode', default='cat', choices=SCORING_MODES,
                   help='cat: [user; x] through an MLP | fully_con: one fully connected layer')
    p.add_argument('--no-cuda', dest='no_cuda', action='store_true', help='never use a GPU (same as --device cpu)')
    # ---- ours
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument('--seed', type=int, default=2019, help='seeds random, numpy, torch and the DataLoader')
    p.add_argument('--topk', default='5,10', help='comma-separated K of the metrics; 10 is used for selection')
    p.add_argument('--num_layers', type=int, default=2, help='stacked aggregation layers (graph models)')
    p.add_argument('--patience', type=int, default=10, help='stop after this many epochs without a better val R@10')
    p.add_argument('--eval_batch', type=int, default=None, help='val/test rows scored at once (default 256 on CPU, '
                                                               '2048 on GPU)')
    p.add_argument('--num_neg', type=int, default=None, help='negatives per val/test row (default: inferred)')
    p.add_argument('--allow_pickle', action='store_true',
                   help="read the authors' pickled .npy files (runs code stored in them: trusted files only)")
    p.add_argument('--loss', default='bpr', choices=('bpr', 'hard_bpr', 'sampled_softmax', 'softmax', 'bce'),
                   help="bpr (the authors', every model) | hard_bpr: BPR on the hardest of --num_train_neg "
                        "negatives | sampled_softmax over the positive and --num_train_neg negatives | softmax or bce "
                        "over all hashtags: the baselines' native losses (USHM/CSMN/UTM softmax, ConTagNet BCE)")
    p.add_argument('--num_train_neg', type=int, default=1, help='negatives drawn per training triple per epoch')
    p.add_argument('--neg_sampling', default='uniform', choices=('uniform', 'popularity', 'user'),
                   help="uniform over training hashtags (the authors') | popularity: in proportion to their uses | "
                        "user: half from the user's own other training hashtags, half uniform")
    g = p.add_argument_group('GCN_PHR_plus (the extension, not the paper; README "Beyond the paper")')
    for part, what in (('identity', 'layer-0 ids in the layer mean, hashtag bias, user x hashtag id term'),
                       ('counts', "the user's training count of the hashtag, log(1 + c), in the score"),
                       ('content', 'a direct post x hashtag content term')):
        g.add_argument(f'--{part}', action=argparse.BooleanOptionalAction, default=True, help=what)
    g.add_argument('--count_weight', type=float, default=1.0,
                   help='initial weight w of the count term w log(1 + c) (learned; it moves about --l_r per step)')
    g.add_argument('--content_net', default='linear', choices=model_lib.CONTENT_NETS,
                   help="the content term's post vector: linear (a linear map of p_v, the projection GCN-PHR's scorer "
                        "reads) | mlp (its own 2-layer MLP on the post's features, as ConTagNet's content branch)")
    g.add_argument('--count_gate', default='none', choices=model_lib.COUNT_GATES,
                   help="a factor 2 sigmoid(logit) on the count term, 1 at the start: none | post: logit = a . p_v + "
                        "<G p_v, e_u> + b, so a post unlike the user's history can turn the count down | pair: also "
                        "+ <K p_v, k_h>, so the post decides which of the user's hashtags its count speaks for")
    g.add_argument('--calibrate_counts', action=argparse.BooleanOptionalAction, default=False,
                   help='after training, scale the learned count weight w of the best checkpoint by the factor of '
                        f'{list(COUNT_SCALES)} best on validation R@10 (ties: NDCG@10); best.pt keeps the scaled w')
    g.add_argument('--select_calibrated', action=argparse.BooleanOptionalAction, default=False,
                   help='fit that factor on validation at every epoch too, and select the epoch and stop early on '
                        'the calibrated validation metrics (training keeps the learned w); implies --calibrate_counts')
    p.add_argument('--save_dir', default='runs', help='folder of run outputs (metrics, checkpoints)')
    p.add_argument('--run_name', default=None, help='subfolder of save_dir (default: model_name)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an earlier run in the run folder (default: a new folder <run>_2, _3, ...)')
    p.add_argument('--decay_embeddings', action=argparse.BooleanOptionalAction, default=False,
                   help='apply --weight_decay to id embeddings and biases too (the authors\' code never did: their '
                        'id tensors were outside model.parameters())')
    p.add_argument('--test_rows', default=None,
                   help='write per-row test metrics (R@10, NDCG@10) of the best-validation checkpoint to this .npz '
                        '(for paired significance tests: scripts/tune.py)')
    p.add_argument('--no_progress', action='store_true', help='no tqdm bars')
    p.add_argument('--keep_freed_memory', action=argparse.BooleanOptionalAction, default=True,
                   help='glibc malloc keeps freed memory for reuse (faster CPU steps at full scale; README, Speed)')
    return p


def resolve_device(args):
    try:
        return model_lib.resolve_device('cpu' if args.no_cuda else args.device)
    except ValueError as e:
        raise SystemExit(f'error: {e}')


def parse_topk(text):
    try:
        ks = sorted({int(k) for k in text.split(',')})
    except ValueError:
        raise SystemExit(f'error: --topk {text!r}: expected comma-separated positive integers, e.g. 5,10')
    if not ks or ks[0] < 1:
        raise SystemExit(f'error: --topk {text!r}: expected comma-separated positive integers, e.g. 5,10')
    return ks


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory in the process instead of handing it back to the OS.

    PyTorch's CPU tensors come straight from malloc; by default every block over 32 MB is a fresh mmap and freed
    heap tops are trimmed, so each large temporary of a training step (the [triples, 2, d] tensors of the attention)
    is page-faulted in anew; with M_MMAP_MAX = 0 and M_TRIM_THRESHOLD = max they are reused (the README's speed
    section has the measured effect). The values computed are unchanged. It is the in-process form of the
    allocator advice in PyTorch's CPU performance guide (jemalloc/tcmalloc via LD_PRELOAD). Linux/glibc only;
    elsewhere a no-op. Returns whether it applied.
    """
    import ctypes
    import platform
    if platform.system() != 'Linux' or not os.confstr('CS_GNU_LIBC_VERSION').startswith('glibc'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TripleSampler(Dataset):
    """Training triples (u, v, h+) with ``num_neg`` fresh negatives h- per epoch: training hashtags not on video v.

    ``negatives``: ``uniform`` over the training hashtags (the authors' sampler); ``popularity``: in proportion to
    their training uses (a uniform draw over the training triples' hashtags); ``user``: half of the draws from the
    user's own training hashtags (those not on v), half uniform, so a model also learns to order a user's own
    hashtags and not only to tell them from strangers (a user whose every hashtag is on v gets uniform ones).
    ``__getitems__`` draws a whole batch at once (vectorised rejection sampling against the sorted
    (video, hashtag) keys of every video's hashtags), so DataLoader workers sample batches, not rows.
    """

    def __init__(self, data, num_neg=1, negatives='uniform'):
        if negatives is True or negatives is False:   # the older boolean form: popularity or not
            negatives = 'popularity' if negatives else 'uniform'
        self.train = data.train
        H = data.num_hashtag
        vid = torch.from_numpy(csr_rows(data.vh_ptr.numpy()))
        self.video_keys = torch.sort(vid * H + data.vh_idx).values
        self.vh_ptr, self.vh_idx = data.vh_ptr, data.vh_idx
        self.pool = data.train[:, 2] if negatives == 'popularity' else data.train_hashtags
        self.negatives = negatives
        if negatives == 'user':   # each user's distinct training hashtags, CSR (graph pairs are grouped by user)
            g = data.graph
            self.user_ptr = torch.zeros(data.num_user + 1, dtype=torch.long)
            self.user_ptr[1:] = torch.cumsum(torch.bincount(g.pair_user, minlength=data.num_user), 0)
            self.user_tags = g.pair_hashtag
        self.H = H
        self.num_neg = num_neg
        if len(data.train_hashtags) < 2:
            raise DataError(f'{data.path}: fewer than two distinct training hashtags; nothing to rank')

    def __len__(self):
        return len(self.train)

    def on_video(self, videos, hashtags):
        keys = videos * self.H + hashtags
        pos = torch.searchsorted(self.video_keys, keys).clamp(max=len(self.video_keys) - 1)
        return self.video_keys[pos] == keys

    def video_hashtags(self, videos):
        """(position in ``videos``, hashtag) for every hashtag of every given video."""
        row, tags = csr_gather(self.vh_ptr.numpy(), self.vh_idx.numpy(), videos.numpy())
        return torch.from_numpy(row), torch.from_numpy(tags)

    def draw(self, videos, users=None):
        """One negative per video: [len(videos)]."""
        def uniform(n):
            return self.pool[torch.randint(len(self.pool), (n,))]

        def own(rows):   # a random training hashtag of each row's user
            lo, hi = self.user_ptr[users[rows]], self.user_ptr[users[rows] + 1]
            return self.user_tags[lo + (torch.rand(len(rows)) * (hi - lo)).long()]

        mine = torch.zeros(len(videos), dtype=torch.bool)
        if self.negatives == 'user':
            mine = torch.rand(len(videos)) < 0.5
        neg = uniform(len(videos))
        if mine.any():
            neg[mine] = own(torch.nonzero(mine).squeeze(1))
        bad = self.on_video(videos, neg)
        for attempt in range(100):
            if not bad.any():
                break
            if attempt == 20:
                mine &= ~bad   # users whose own hashtags are all on this video: uniform from here on
            idx = torch.nonzero(bad).squeeze(1)
            m = mine[idx]
            fresh = uniform(len(idx))
            if m.any():
                fresh[m] = own(idx[m])
            neg[idx] = fresh
            bad = self.on_video(videos, neg)
        if bad.any():
            raise DataError('could not draw a negative for some videos: they carry every training hashtag')
        return neg

    def __getitems__(self, index):
        rows = self.train[torch.as_tensor(index)]
        negs = [self.draw(rows[:, 1], rows[:, 0]) for _ in range(self.num_neg)]
        return torch.cat([rows, torch.stack(negs, 1)], 1)   # [B, 3 + num_neg]: user, video, pos, negatives

    def __getitem__(self, i):
        return self.__getitems__([i])[0]


def _as_batch(batch):
    return batch   # __getitems__ already returns the batch tensor


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is no longer finite)."""


def bpr_loss(pos, neg):
    """The authors' loss: sum over the batch of -log2(sigmoid(s+ - s-))."""
    return torch.nn.functional.softplus(neg - pos).sum() / math.log(2.0)


def bpr_step(model, batch, sampler):
    """BPR against every negative of the row (the authors' loss with one negative)."""
    scores = model(batch[:, 0], batch[:, 1], batch[:, 2:])   # [B, 1 + K]: pos, negatives
    return bpr_loss(scores[:, :1], scores[:, 1:])


def hard_bpr_step(model, batch, sampler):
    """BPR against the hardest (highest-scored) of the row's K negatives."""
    scores = model(batch[:, 0], batch[:, 1], batch[:, 2:])
    return bpr_loss(scores[:, 0], scores[:, 1:].max(1).values)


def sampled_softmax_step(model, batch, sampler):
    """Sampled softmax: -log softmax over [s+, s-_1, ..., s-_K] at the positive, summed over the batch."""
    scores = model(batch[:, 0], batch[:, 1], batch[:, 2:])
    return (torch.logsumexp(scores, 1) - scores[:, 0]).sum()


def softmax_step(model, batch, sampler):
    """Softmax cross-entropy of the positive over all hashtags (the baselines' native loss)."""
    logits = model.score_all(model.encode(), batch[:, 0], batch[:, 1])          # [B, H]
    return torch.nn.functional.cross_entropy(logits, batch[:, 2], reduction='sum')


def bce_step(model, batch, sampler):
    """Multi-label BCE against every hashtag of the video (ConTagNet's native loss)."""
    logits = model.score_all(model.encode(), batch[:, 0], batch[:, 1])          # [B, H]
    target = torch.zeros_like(logits)
    row, tags = sampler.video_hashtags(batch[:, 1].cpu())
    target[row.to(logits.device), tags.to(logits.device)] = 1.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction='sum') / logits.size(1)


# --loss name -> fn(model, batch [B, 3 + K] (user, video, pos, K negatives), sampler) -> loss summed over the batch.
# A model says which of these it supports in ``Recommender.losses``; the candidate losses (bpr, hard_bpr,
# sampled_softmax) use the --num_train_neg negatives, softmax and bce score every hashtag.
LOSSES = {'bpr': bpr_step, 'hard_bpr': hard_bpr_step, 'sampled_softmax': sampled_softmax_step,
          'softmax': softmax_step, 'bce': bce_step}
CANDIDATE_LOSSES = ('bpr', 'hard_bpr', 'sampled_softmax')


def train_epoch(model, loader, optimizer, loss_fn, sampler=None, device='cpu', desc='train', progress=True,
                shard=None):
    """One pass over the loader: a step per batch. Returns the mean training loss per triple.

    ``shard = (rank, world)`` (data-parallel, ``model`` wrapped in DistributedDataParallel): every process draws
    the same global batch (same seed, same random stream) and computes the loss of its contiguous share of the
    rows; the loss is scaled by ``world`` because DDP averages the gradients, so the step equals one process's
    step on the whole batch.
    """
    model.train()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        n = len(batch)
        if shard is not None:
            batch = batch.tensor_split(shard[1])[shard[0]]
        batch = batch.to(device, non_blocking=True)
        loss = loss_fn(model, batch, sampler)
        value = loss.detach()
        if shard is not None:   # every process sees the whole batch's loss (and stops together on NaN)
            value = value.clone()
            torch.distributed.all_reduce(value)
        if not torch.isfinite(value):
            raise TrainingError(f'loss became {value.item()}')
        optimizer.zero_grad(set_to_none=True)
        (loss * shard[1] if shard is not None else loss).backward()
        optimizer.step()
        total += value.item()
        count += n
    return total / count


def evaluate_splits(model, splits, ks, batch_size=None, shard=None, enc=None):
    """{split name: metrics} for every EvalSplit given, from one propagation (``enc``, or one made here; rows
    shared out with ``shard``)."""
    model.eval()
    if enc is None:
        with torch.no_grad():
            enc = model.encode()
    return {name: evaluate(model, split, ks, batch_size, enc=enc, shard=shard) for name, split in splits.items()}


def save_checkpoint(path, model, optimizer, epoch, best, config, model_info, extra=None):
    """model weights + ``model_info`` (model_name, model_args: what rebuilds the model) + the run state."""
    write_checkpoint(path, {'model': model.state_dict(), **model_info,
                            'optimizer': optimizer.state_dict() if optimizer else None,
                            'epoch': epoch, 'best': best, 'config': config, **(extra or {})})


def write_checkpoint(path, ckpt):
    """``torch.save`` through a temporary file: a failed write leaves the previous checkpoint, and one clear error."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp'
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:   # a full disk, a folder gone: keep the previous checkpoint, no .tmp
        if os.path.exists(tmp):
            os.remove(tmp)
        raise SystemExit(f'error: could not write the checkpoint {path} ({e}); the previous one is unchanged')


# factors of the learned count weight tried on validation by --calibrate_counts (1 keeps it as trained)
COUNT_SCALES = (0.5, 1, 1.5, 2, 3, 5, 8)


def calibrate_count_weight(model, val, ks, batch_size=None, scales=COUNT_SCALES, k=10, shard=None, enc=None):
    """Scale GCN_PHR_plus's learned count weight w by the factor of ``scales`` whose validation metrics are best
    (``selection_key``: Recall@k, then NDCG@k; on an exact tie the factor nearest 1, so w moves only where
    validation says so) and leave it scaled in ``model``.
    w is one scalar under Adam, which moves it about one learning rate per step, so from where it starts it moves
    little in the few hundred steps a run has; its scale is fitted here afterwards, on validation only, as the
    epoch is. Returns (factor, w before, [(factor, val metrics), ...]); (1.0, None, []) without a count term.
    ``shard``: rows shared out over data-parallel processes (``evaluate``); ``enc``: a propagation to reuse."""
    w = getattr(model, 'count_weight', None)
    if w is None:
        return 1.0, None, []
    model.eval()
    with torch.no_grad():
        if enc is None:
            enc = model.encode()            # the count term is added after propagation: one encode serves all
        w0 = w.detach().clone()
        variants = count_weight_variants(model, [w0 * f for f in scales])
        table = list(zip(map(float, scales), evaluate_variants(model, val, variants, len(scales), ks, batch_size,
                                                               enc=enc, shard=shard)))
        best = best_scale(table, k)
        w.copy_(w0 * best[0])
    return best[0], float(w0), table


def count_weight_variants(model, weights):
    """``variants`` for ``evaluation.evaluate_variants``: GCN_PHR_plus's score at each count weight of ``weights``,
    the rest of the score computed once and each weight's count term added to it (``GCNPHRPlus.score_parts``)."""
    def variants(enc, users, videos, hashtags):
        s, log_count = model.score_parts(enc, users, videos, hashtags)
        return [s + wf * log_count for wf in weights]
    return variants


def best_scale(table, k=10):
    """The (factor, metrics) of ``table`` that count-weight calibration keeps: best ``selection_key``, then the
    factor nearest 1 (w moves only where validation says so), then the smaller one."""
    return max(table, key=lambda t: (selection_key(t[1], k), -abs(math.log(t[0])), -t[0]))


def selection_key(metrics, k=10):
    """What checkpoint selection maximises, on validation metrics only: Recall@K, exact ties (common on small
    validation splits) broken by NDCG@K."""
    return metrics[f'recall@{k}'], metrics[f'ndcg@{k}']


def fmt(m, k):
    return f"P@{k} {m[f'precision@{k}']:.4f} R@{k} {m[f'recall@{k}']:.4f} N@{k} {m[f'ndcg@{k}']:.4f}"


def param_groups(model, weight_decay, decay_embeddings=False):
    """Adam parameter groups: weight decay on the weight matrices only, as in the authors' code, where the id
    embeddings were plain tensors outside ``model.parameters()`` and so never decayed. Id embeddings (every
    ``nn.Embedding``) and biases (1-D parameters) are decayed only with ``decay_embeddings``."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if (id(p) in embeddings or p.dim() < 2) and not decay_embeddings else decay).append(p)
    return [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]


def write_test_rows(path, model, split, batch_size=None):
    """Per-row test Recall@10 and NDCG@10 (float32 .npz, row order of test.npy), written atomically."""
    rows = evaluate_rows(model, split, (10,), batch_size)
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez_compressed(tmp, **{k: v.numpy().astype(np.float32) for k, v in rows.items()
                                if k in ('recall@10', 'ndcg@10')})
    os.replace(tmp, path)


def evaluate_epoch(model, splits, ks, batch_size=None, shard=None, calibrate=False, k=10):
    """An epoch's {split: metrics}, and the count-weight factor they were taken at (None: not calibrated). With
    ``calibrate`` (--select_calibrated) and a count term, the factor is the one ``calibrate_count_weight`` fits on
    validation; validation and test are measured at it, then w goes back to its learned value, so training never
    sees the factor: only which epoch is selected, and when patience stops the run, do."""
    if not calibrate or getattr(model, 'count_weight', None) is None:
        return evaluate_splits(model, splits, ks, batch_size, shard), None
    model.eval()
    with torch.no_grad():
        enc = model.encode()
        factor, w0, table = calibrate_count_weight(model, splits['val'], ks, batch_size, k=k, shard=shard, enc=enc)
        m = {'val': dict(table)[factor], **evaluate_splits(model, {n: s for n, s in splits.items() if n != 'val'}, ks,
                                                           batch_size, shard, enc)}
        model.count_weight.copy_(w0)
    return m, factor


def calibrate_run(best_path, run_dir, data, splits, ks, batch_size, device, k=10, config=None):
    """--calibrate_counts after training: the best checkpoint's count weight scaled on validation
    (``calibrate_count_weight``), the checkpoint rewritten with the scaled weight (and ``config``, when given, as its
    run config), ``calibration.json`` written beside it. Returns the run's best record with the calibrated val/test
    metrics, ``count_scale`` and ``count_weight``. scripts/tune.py calls it on an existing run's checkpoint too:
    training does not depend on the flag, so that gives the numbers a fresh run would."""
    try:
        model, ckpt = load_checkpoint(best_path, data, device)
    except CheckpointError as e:
        raise SystemExit(f'error: {e}')
    best = dict(ckpt.get('best') or {})
    if best.get('count_weight_trained') is not None:   # calibrated before: start again from the trained weight
        with torch.no_grad():
            model.count_weight.fill_(best['count_weight_trained'])
    factor, w0, table = calibrate_count_weight(model, splits['val'], ks, batch_size, k=k)
    if w0 is None:
        print('--calibrate_counts: this model has no count term (--no-counts): nothing to calibrate')
        return best
    m = {'val': dict(table)[factor], **evaluate_splits(model, {'test': splits['test']}, ks, batch_size)}
    w = float(model.count_weight.detach())
    print(f'count weight w = {w0:.3f} as trained; on validation (R@{k} / NDCG@{k}): '
          + ', '.join(f'x{f:g} {t[f"recall@{k}"]:.4f} / {t[f"ndcg@{k}"]:.4f}' for f, t in table)
          + f'; kept x{factor:g} (w = {w:.3f})')
    best.update(val=m['val'], test=m['test'], count_scale=factor, count_weight=w, count_weight_trained=w0)
    ckpt.update(model=model.state_dict(), best=best)
    if config is not None:
        ckpt['config'] = config
    write_checkpoint(best_path, ckpt)
    info = {'epoch': best.get('epoch'), 'count_weight_trained': w0, 'count_scale': factor, 'count_weight': w,
            'val_by_scale': [{'scale': f, 'val': t} for f, t in table], 'val': m['val'], 'test': m['test']}
    with open(os.path.join(run_dir, 'calibration.json'), 'w') as f:
        json.dump(info, f, indent=1)
    return best


def check_flags(args):
    if args.select_calibrated:
        args.calibrate_counts = True
    if args.calibrate_counts and args.model_name != 'GCN_PHR_plus':
        raise SystemExit(f'error: --calibrate_counts scales the count term of GCN_PHR_plus; {args.model_name} has none')
    for flag in ('l_r', 'weight_decay', 'count_weight'):
        if not math.isfinite(getattr(args, flag)):
            raise SystemExit(f'error: --{flag} must be a finite number, got {getattr(args, flag)}')
    for flag in ('l_r', 'batch_size', 'dim_latent', 'num_epoch', 'num_layers', 'eval_batch', 'num_train_neg'):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise SystemExit(f'error: --{flag} must be positive, got {getattr(args, flag)}')
    for flag in ('weight_decay', 'num_workers', 'patience', 'seed'):
        if getattr(args, flag) < 0:
            raise SystemExit(f'error: --{flag} cannot be negative, got {getattr(args, flag)}')
    if args.seed >= 2 ** 32:
        raise SystemExit(f'error: --seed must be below 2**32, got {args.seed}')


def check_writable(path, what):
    """Fail now, not after an epoch: ``path``'s folder can be made and written (a probe file is made and removed)."""
    folder = os.path.dirname(os.path.abspath(path))
    probe = os.path.join(folder, f'.write_test_{os.getpid()}')
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as e:
        raise SystemExit(f'error: {what} {path}: cannot write there ({e.strerror or e})') from None
    if os.path.isdir(path):
        raise SystemExit(f'error: {what} {path}: is a folder, expected a file path')


def choose_run_dir(args):
    """The run folder: <save_dir>/<run_name or model_name>. One that holds an earlier run is never overwritten: the
    next free <name>_2, _3, ... is used instead (said so), unless --overwrite or a resume into it."""
    if os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
        raise SystemExit(f'error: --save_dir {args.save_dir}: is a file, expected a folder')
    base = os.path.join(args.save_dir, args.run_name or args.model_name)
    if os.path.exists(base) and not os.path.isdir(base):
        raise SystemExit(f'error: run folder {base}: is a file, expected a folder')
    taken = lambda d: os.path.exists(os.path.join(d, 'metrics.jsonl')) or os.path.exists(os.path.join(d, 'best.pt'))
    resuming_here = args.PATH_weight_load and os.path.abspath(os.path.dirname(args.PATH_weight_load)) == \
        os.path.abspath(base)
    if args.overwrite or resuming_here or not taken(base):
        return base
    i = 2
    while taken(f'{base}_{i}'):
        i += 1
    print(f'{base} holds an earlier run: writing this one to {base}_{i} (--overwrite to replace it)')
    return f'{base}_{i}'


def load_data(args):
    if args.data_path == DEMO_PATH and not os.path.exists(os.path.join(DEMO_PATH, 'test.npy')):
        import generate
        print(f'{DEMO_PATH} not found: generating the demo dataset (seconds, once)')
        generate.main(['--preset', 'demo'])
    return load_dataset(args.data_path, allow_pickle=args.allow_pickle, num_neg=args.num_neg)


def resume(path, data, device, args):
    """The model rebuilt from the checkpoint's own model_args, its weights, and the run state to continue from."""
    model, ckpt = load_checkpoint(path, data, device)
    if ckpt.get('model_name', args.model_name) != args.model_name:
        print(f'note: {path} holds a {ckpt["model_name"]} model; continuing that model (--model_name '
              f'{args.model_name} is ignored)')
        args.model_name = ckpt['model_name']
    return model, ckpt


def init_distributed(args):
    """Under torchrun (WORLD_SIZE > 1): one process per device, NCCL on CUDA, gloo on CPU. Returns (rank, world,
    device), or None for a plain single-process run."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return None
    import torch.distributed as dist
    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    device = resolve_device(args)
    if device.type == 'cuda':
        device = torch.device('cuda', local)
        torch.cuda.set_device(device)
    if args.loss in ('softmax', 'bce'):
        raise SystemExit(f'error: --loss {args.loss} scores outside the DDP forward; data-parallel runs train with '
                         f'bpr, hard_bpr or sampled_softmax')
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return rank, world, device


def finish_distributed(ddp):
    if ddp is not None:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def broadcast(obj, ddp):
    """rank 0's value of ``obj`` on every process (a no-op without torch.distributed)."""
    if ddp is None:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def resume_state(ckpt, optimizer, groups, gen, args):
    """Continue a run from its checkpoint: optimiser state with the learning rate and weight decay given now,
    the random streams of the sampler and the data order, the patience counter. Returns (start, best, since)."""
    path = args.PATH_weight_load
    if ckpt.get('optimizer'):
        try:
            optimizer.load_state_dict(ckpt['optimizer'])
        except (ValueError, KeyError) as e:
            print(f'note: {path}: optimiser state not restored ({e}); Adam starts afresh')
    for group, fresh in zip(optimizer.param_groups, groups):   # the flags given now win, said so when they differ
        group['lr'], group['weight_decay'] = args.l_r, fresh['weight_decay']
    before = ckpt.get('config') or {}
    for flag in ('l_r', 'weight_decay', 'decay_embeddings', 'batch_size', 'loss', 'num_train_neg'):
        if flag in before and before[flag] != getattr(args, flag):
            print(f'note: resuming with --{flag} {getattr(args, flag)} (the checkpoint ran with {before[flag]})')
    rng = ckpt.get('rng')
    if rng:
        torch.set_rng_state(rng['torch'].cpu())
        gen.set_state(rng['loader'].cpu())
    else:
        print(f'note: {path} holds no random state (written before resume kept it): the sampler restarts its stream')
    start = int(ckpt.get('epoch', -1)) + 1
    print(f'resumed from {path} at epoch {start}')
    return start, ckpt.get('best') or {'epoch': -1, 'val': None, 'test': None}, int(ckpt.get('since_best', 0))


def main(argv=None):
    # ---- flags, device, seed
    args = build_parser().parse_args(argv)
    ks = parse_topk(args.topk)
    k_sel = 10 if 10 in ks else ks[-1]
    check_flags(args)
    ddp = init_distributed(args)            # torchrun: (rank, world, device); plain python: None
    device = ddp[2] if ddp else resolve_device(args)
    shard = ddp[:2] if ddp else None
    rank0 = ddp is None or ddp[0] == 0
    if not rank0:                           # one process prints, writes metrics and checkpoints
        sys.stdout = open(os.devnull, 'w')
        args.no_progress = True
    seed_everything(args.seed)
    if args.keep_freed_memory:
        keep_freed_memory()
    run_dir = broadcast(choose_run_dir(args) if rank0 else None, ddp)
    best_path = args.PATH_weight_save or os.path.join(run_dir, 'best.pt')
    if rank0:
        if args.PATH_weight_save and os.path.exists(args.PATH_weight_save) and not args.overwrite \
                and not args.PATH_weight_load:
            raise SystemExit(f'error: --PATH_weight_save {args.PATH_weight_save} exists; pass --overwrite to '
                             f'replace it')
        check_writable(os.path.join(run_dir, 'metrics.jsonl'), 'run folder file')
        check_writable(best_path, '--PATH_weight_save')
        if args.test_rows:
            check_writable(args.test_rows, '--test_rows')

    # ---- data and model (built from the flags, or from the checkpoint being resumed)
    ckpt = None
    try:
        data = load_data(args)
        if args.PATH_weight_load:
            model, ckpt = resume(args.PATH_weight_load, data, device, args)
        else:
            model = build_model(args.model_name, data, **hparams_from_flags(vars(args))).to(device)
        sampler = TripleSampler(data, args.num_train_neg, args.neg_sampling)
    except (DataError, CheckpointError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    config = dict(vars(args))
    model_info = checkpoint_model_args(args.model_name, hparams_from_flags(vars(args)))
    if ckpt is not None:
        model_info = {'model_name': ckpt.get('model_name', args.model_name),
                      'model_args': ckpt.get('model_args', model_info['model_args'])}
    splits = {'val': data.val.to(device), 'test': data.test.to(device)}
    losses_ok = type(model).losses + (CANDIDATE_LOSSES[1:] if 'bpr' in type(model).losses else ())
    if model.trainable and args.loss not in losses_ok:
        raise SystemExit(f'error: --loss {args.loss} is not offered for {args.model_name} (it trains with '
                         f'{" / ".join(type(model).losses)}); softmax and bce score every hashtag per row and are '
                         f'the baselines\' native losses')
    n_params = sum(p.numel() for p in model.parameters())
    print(f'model: {args.model_name} ({n_params:,} parameters) on {device}; '
          f'aggr_mode={args.aggr_mode} scoring_mode={args.scoring_mode} num_layers={args.num_layers}'
          + (f'; data-parallel over {ddp[1]} processes' if ddp else ''))
    os.makedirs(run_dir, exist_ok=True)

    # ---- models without training (the popularity floors): evaluated once
    if not model.trainable:
        m = evaluate_splits(model, splits, ks, args.eval_batch, shard)
        print(f'{args.model_name} | val {fmt(m["val"], k_sel)} | test {fmt(m["test"], k_sel)}')
        if rank0:
            with open(os.path.join(run_dir, 'metrics.jsonl'), 'w') as f:
                f.write(json.dumps({'epoch': 0, 'loss': None, 'val': m['val'], 'test': m['test'],
                                    'seconds': 0.0}) + '\n')
            if args.test_rows:
                write_test_rows(args.test_rows, model, splits['test'], args.eval_batch)
        finish_distributed(ddp)
        return {'epoch': 0, 'best_epoch': 0, 'val': m['val'], 'test': m['test']}

    # ---- optimiser, data order; resume (the run continues: optimiser, random streams, patience)
    groups = param_groups(model, args.weight_decay, args.decay_embeddings)
    optimizer = torch.optim.Adam(groups, lr=args.l_r)
    workers = min(args.num_workers, os.cpu_count() or 1)
    if workers != args.num_workers:
        print(f'num_workers {args.num_workers} > {os.cpu_count()} CPUs here: using {workers}')
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(sampler, batch_size=args.batch_size, shuffle=True, generator=gen, num_workers=workers,
                        collate_fn=_as_batch, persistent_workers=workers > 0)
    start_epoch, best, since_best = 0, {'epoch': -1, 'val': None, 'test': None}, 0
    if ckpt is not None:
        start_epoch, best, since_best = resume_state(ckpt, optimizer, groups, gen, args)
    metrics_path = os.path.join(run_dir, 'metrics.jsonl')
    kept = []
    if start_epoch and os.path.exists(metrics_path):   # lines of epochs after the checkpoint are done again
        kept = [line for line in open(metrics_path) if line.strip() and json.loads(line)['epoch'] < start_epoch]
    metrics_file = open(metrics_path if rank0 else os.devnull, 'w')
    metrics_file.writelines(kept)
    epochs_run = start_epoch
    if ddp:   # gradients all-reduced by DDP; buffers are data, the same on every process
        from torch.nn.parallel import DistributedDataParallel
        import warnings
        with warnings.catch_warnings():   # broadcast_buffers=False is what we mean (data buffers, never synced)
            warnings.simplefilter('ignore', FutureWarning)
            train_model = DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None,
                                                  broadcast_buffers=False)
    else:
        train_model = model
    for epoch in range(start_epoch, args.num_epoch):
        epochs_run = epoch + 1
        t0 = time.perf_counter()
        try:
            loss = train_epoch(train_model, loader, optimizer, LOSSES[args.loss], sampler, device, f'epoch {epoch}',
                               progress=not args.no_progress, shard=shard)
        except TrainingError as e:
            raise SystemExit(f'error: {e} at epoch {epoch}; try a smaller --l_r (now {args.l_r}) or check the '
                             f'features for extreme values')
        except DataError as e:
            raise SystemExit(f'error: {e}')
        m, factor = evaluate_epoch(model, splits, ks, args.eval_batch, shard, args.select_calibrated, k_sel)
        secs = time.perf_counter() - t0
        improved = best['val'] is None or selection_key(m['val'], k_sel) > selection_key(best['val'], k_sel)
        print(f'epoch {epoch:3d} | loss {loss:.4f} | val {fmt(m["val"], k_sel)} | test {fmt(m["test"], k_sel)} '
              + (f'| w x{factor:g} ' if factor is not None else '') + f'| {secs:.1f}s{" *" if improved else ""}',
              flush=True)
        metrics_file.write(json.dumps({'epoch': epoch, 'loss': loss, 'val': m['val'], 'test': m['test'],
                                       'seconds': secs, **({'count_scale': factor} if factor is not None else {})})
                           + '\n')
        metrics_file.flush()
        if improved:
            best, since_best = {'epoch': epoch, 'val': m['val'], 'test': m['test']}, 0
        else:
            since_best += 1
        state = {'since_best': since_best, 'rng': {'torch': torch.get_rng_state(), 'loader': gen.get_state()}}
        if rank0 and improved:
            save_checkpoint(best_path, model, optimizer, epoch, best, config, model_info, state)
        if rank0:
            save_checkpoint(os.path.join(run_dir, 'last.pt'), model, optimizer, epoch, best, config, model_info,
                            state)
        if since_best >= args.patience > 0:
            print(f'no better validation R@{k_sel} for {args.patience} epochs: stopping')
            break
    metrics_file.close()
    best['epochs_run'] = epochs_run
    if rank0 and args.calibrate_counts and best['val'] is not None:
        best = dict(calibrate_run(best_path, run_dir, data, splits, ks, args.eval_batch, device, k_sel),
                    epochs_run=epochs_run)
    if rank0 and args.test_rows and best['val'] is not None:
        best_model, _ = load_checkpoint(best_path, data, device)
        write_test_rows(args.test_rows, best_model, splits['test'], args.eval_batch)
    if best['val'] is not None:
        print(f"best epoch {best['epoch']} (by val R@{k_sel}, then N@{k_sel}) | val {fmt(best['val'], k_sel)} | "
              f"test {fmt(best['test'], k_sel)} | checkpoint {best_path}")
    # the DDP wrapper goes before the process group: freed after it (when main returns), its reducer would hold the
    # group's last reference, and the gloo destructor, joining its worker thread with the GIL held while that thread
    # waits for the GIL to free a finished allreduce's tensors, deadlocks now and then (seen in tests/test_distributed)
    del train_model
    finish_distributed(ddp)
    return best


if __name__ == '__main__':
    main()
