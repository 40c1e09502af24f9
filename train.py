"""Train and evaluate GCN-PHR (or a variant / baseline) on one dataset folder.

    python train.py                                  # GCN-PHR on Data/demo (generated on first use), CPU or GPU
    python train.py --data_path Data/yfcc100m --l_r=0.001 --weight_decay=0.1 --batch_size=1024 --dim_latent=64 \
        --num_workers=30 --aggr_mode='mean' --scoring_mode='cat'      # the authors' README command
    python train.py --model_name UTM --num_epoch 20  # a baseline through the same loop
    python train.py --PATH_weight_load runs/GCN_PHR/last.pt          # resume: the run continues where it stopped
    python train.py --model_name GCN_PHR_plus --loss sampled_softmax --num_train_neg 8   # the extension (not the paper)
    torchrun --nproc_per_node 4 train.py --data_path Data/yfcc100m    # data-parallel (DDP), --batch_size stays global

One log line per epoch: training loss, validation and test P/R/NDCG@10, seconds, under ``--protocol`` (sampled:
the paper's 1,000 negatives per row, the default; full: every hashtag a candidate). The checkpoint kept is the
epoch of best validation Recall@10 (``--select``), ties broken by validation NDCG@10 (never test); the test numbers reported
at the end are that epoch's. Per-epoch metrics also go to <save_dir>/<run>/metrics.jsonl.

Each model takes only its own knobs (declared beside its code, README "Flags"): a flag the chosen model does not
take is an error. Nothing imports this file; what the loop uses lives in small modules (sampling, losses,
checkpoint, run_folder, distributed, hooks, runtime, evaluation, registry).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from phr.util import atomic
from phr.training import distributed
from phr.training import run_folder
from phr.training.checkpoint import (CheckpointError, build_model, load_checkpoint, read_checkpoint, save_checkpoint,
                                     write_checkpoint)
from data_load import DataError, load_dataset
from evaluation import METRICS, evaluate_splits, full_split, selection_key
from phr.training.hooks import hook_for
from phr.training.losses import CANDIDATE_LOSSES, LOSSES, TrainingError
from phr.models.registry import (MODELS, add_model_flags, checkpoint_model_args, get_spec, hparams_from_config,
                                 model_args, model_flags, model_hparams, stored_args)
from phr.util.runtime import keep_freed_memory, resolve_device, seed_everything
from phr.training.sampling import TripleSampler

DEMO_PATH = os.path.join('Data', 'demo')
# flags that only a trained model uses: an error for the popularity floors, which are evaluated as built
TRAINING_FLAGS = ('l_r', 'weight_decay', 'batch_size', 'num_epoch', 'num_workers', 'patience', 'loss',
                  'num_train_neg', 'neg_sampling', 'decay_embeddings', 'PATH_weight_load')


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- the authors' flags (their README command runs verbatim; --dim_latent, --aggr_mode, --scoring_mode are
    #      model knobs, below)
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
    p.add_argument('--num_epoch', type=int, default=25, help='maximum number of epochs')
    p.add_argument('--num_workers', type=int, default=0,
                   help='DataLoader processes that draw the negatives (capped at the CPU count)')
    p.add_argument('--no-cuda', dest='no_cuda', action='store_true', help='never use a GPU (same as --device cpu)')
    # ---- ours
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument('--seed', type=int, default=2019, help='seeds random, numpy, torch and the DataLoader')
    p.add_argument('--topk', default='5,10', help='comma-separated K of the metrics')
    p.add_argument('--select', default='recall@10',
                   help='the validation metric that selects the epoch and stops early, METRIC@K of a registered metric '
                        '(evaluation.METRICS: precision, recall, ndcg, hit) and a K of --topk; exact ties broken by '
                        'NDCG@K (by Recall@K when it is NDCG)')
    p.add_argument('--patience', type=int, default=10,
                   help='stop after this many epochs without a better validation --select metric')
    p.add_argument('--eval_batch', type=int, default=None, help='val/test rows scored at once (default 256 on CPU, '
                                                               '2048 on GPU)')
    p.add_argument('--protocol', default='sampled', choices=('sampled', 'full'),
                   help="sampled: each val/test row ranks its 1,000 stored negatives + positives (the paper's) | full: "
                        "every hashtag of the vocabulary is a candidate (what a person posting sees; nothing masked); "
                        "selection, early stopping, the epoch line and the test all use it")
    p.add_argument('--num_neg', type=int, default=None, help='negatives per val/test row (default: inferred)')
    p.add_argument('--allow_pickle', action='store_true',
                   help="read the authors' pickled .npy files (runs code stored in them: trusted files only)")
    p.add_argument('--loss', default='bpr', choices=tuple(LOSSES),
                   help="bpr (the authors'; the default of every model that takes it, TagMix trains with softmax) | "
                        "hard_bpr: BPR on the hardest of --num_train_neg negatives | sampled_softmax over the "
                        "positive and --num_train_neg negatives | softmax or bce over all hashtags: the baselines' "
                        "native losses (USHM/CSMN/UTM softmax, ConTagNet BCE)")
    p.add_argument('--num_train_neg', type=int, default=1, help='negatives drawn per training triple per epoch')
    p.add_argument('--neg_sampling', default='uniform', choices=('uniform', 'popularity', 'user'),
                   help="uniform over training hashtags (the authors') | popularity: in proportion to their uses | "
                        "user: half from the user's own other training hashtags, half uniform")
    p.add_argument('--decay_embeddings', action=argparse.BooleanOptionalAction, default=False,
                   help='apply --weight_decay to id embeddings and biases too (the authors\' code never did: their '
                        'id tensors were outside model.parameters())')
    p.add_argument('--save_dir', default='runs', help='folder of run outputs (metrics, checkpoints)')
    p.add_argument('--run_name', default=None, help='subfolder of save_dir (default: model_name)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an earlier run in the run folder (default: a new folder <run>_2, _3, ...)')
    p.add_argument('--test_rows', default=None,
                   help='write per-row test metrics (R@10, NDCG@10) of the best-validation checkpoint to this .npz '
                        '(for paired significance tests: scripts/tune.py)')
    p.add_argument('--no_progress', action='store_true', help='no tqdm bars')
    p.add_argument('--keep_freed_memory', action=argparse.BooleanOptionalAction, default=True,
                   help='glibc malloc keeps freed memory for reuse (faster CPU steps at full scale; docs/speed.md)')
    add_model_flags(p)
    return p


def parse_args(argv=None):
    """(args, the flags given on the command line): a second parse with every default suppressed tells them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return args, set(vars(parser.parse_args(argv)))


def parse_topk(text):
    try:
        ks = sorted({int(k) for k in text.split(',')})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise SystemExit(f'error: --topk {text!r}: expected comma-separated positive integers, e.g. 5,10')
    return ks


def parse_select(text, ks):
    """--select METRIC@K: a registered metric at one of the K of --topk."""
    name, _, k = text.partition('@')
    if name not in METRICS or not k.isdigit() or int(k) not in ks:
        raise SystemExit(f'error: --select {text!r}: expected METRIC@K with METRIC one of {", ".join(METRICS)} and K '
                         f'one of --topk {",".join(map(str, ks))}')
    return f'{name}@{int(k)}'


def check_flags(args, given):
    """Values in range, and every flag given is one the chosen model uses."""
    for flag in ('l_r', 'weight_decay'):
        if not math.isfinite(getattr(args, flag)):
            raise SystemExit(f'error: --{flag} must be a finite number, got {getattr(args, flag)}')
    for flag in ('l_r', 'batch_size', 'num_epoch', 'eval_batch', 'num_train_neg'):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise SystemExit(f'error: --{flag} must be positive, got {getattr(args, flag)}')
    for flag in ('weight_decay', 'num_workers', 'patience', 'seed'):
        if getattr(args, flag) < 0:
            raise SystemExit(f'error: --{flag} cannot be negative, got {getattr(args, flag)}')
    if args.seed >= 2 ** 32:
        raise SystemExit(f'error: --seed must be below 2**32, got {args.seed}')
    spec = get_spec(args.model_name)
    if not spec.trainable:
        unused = [f for f in TRAINING_FLAGS if f in given]
        if unused:
            raise SystemExit(f'error: {args.model_name} is not trained (evaluated as built): '
                             f'{", ".join("--" + f for f in unused)} would do nothing')
    for h in spec.hparams:   # a model's own value checks (its declared ranges), before any data is read
        why = h.problem(getattr(args, h.cli, h.default))
        if why:
            raise SystemExit(f'error: --{h.cli} {why}')


def model_flags_given(args):
    """{flag: value} of the model knobs on the command line (they default to SUPPRESS: absent unless given)."""
    return {f: getattr(args, f) for f in model_flags() if hasattr(args, f)}


def resume(path, data, device, args, given):
    """(model rebuilt from the checkpoint's own model_args with its weights, the checkpoint, its constructor
    arguments). A flag that would change the model (another --model_name, a model knob of another value) is an
    error: the checkpoint decides."""
    model, ckpt = load_checkpoint(path, data, device)
    name = ckpt.get('model_name') or (ckpt.get('config') or {}).get('model_name')
    if 'model_name' in given and args.model_name != name:
        raise SystemExit(f'error: {path} holds a {name} model; --model_name {args.model_name} would change it '
                         f'(leave it out to continue that model)')
    args.model_name = name
    stored = (stored_args(name, ckpt['model_args']) if isinstance(ckpt.get('model_args'), dict)
              else hparams_from_config(name, ckpt.get('config') or {}))
    for h in get_spec(name).hparams:
        if hasattr(args, h.cli) and h.name in stored and getattr(args, h.cli) != stored[h.name]:
            raise SystemExit(f'error: {path} was trained with --{h.cli} {stored[h.name]}; --{h.cli} '
                             f'{getattr(args, h.cli)} would change the model (leave it out to resume)')
    return model, ckpt, stored


def resumed_into(before, save_path):
    """Whether ``save_path`` is where the run being resumed (its run config ``before``) kept its best checkpoint: then
    a resume may replace it, as the run itself would have."""
    kept = before.get('PATH_weight_save')
    return bool(kept) and os.path.abspath(kept) == os.path.abspath(save_path)


# what selection depends on: a resume under another value would compare epochs measured differently
RUN_IDENTITY = ('protocol', 'select', 'topk', 'num_neg')


def keep_run_identity(args, given):
    """A resume keeps the run's identity (``RUN_IDENTITY``: what selection depends on) from its checkpoint: a flag
    given with another value is one clear error, a flag left out takes the checkpoint's value. Returns the
    checkpoint's run config."""
    path = args.PATH_weight_load
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        raise SystemExit(f'error: {e}')
    before = ckpt.get('config') if isinstance(ckpt.get('config'), dict) else {}
    for flag in RUN_IDENTITY:
        if flag not in before:
            continue
        if flag in given and getattr(args, flag) != before[flag]:
            raise SystemExit(f'error: {path} ran with --{flag} {before[flag]}; --{flag} {getattr(args, flag)} would '
                             f'select across epochs measured differently (leave it out to resume, or start a new run)')
        setattr(args, flag, before[flag])
    return before


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


def fmt(m, k):
    return f"P@{k} {m[f'precision@{k}']:.4f} R@{k} {m[f'recall@{k}']:.4f} N@{k} {m[f'ndcg@{k}']:.4f}"


def main(argv=None):
    """The command: trains and evaluates one run (``argv``: train.py's flags). Returns the run's best epoch."""
    peers = distributed.Peers()   # under torchrun: one line when another process of the run is gone
    try:
        return train(argv, peers)
    except RuntimeError as e:
        stop = peers.lost(e)
        if stop is None:
            raise
        raise stop from None


def train(argv, peers):
    # ---- flags, device, seed
    args, given = parse_args(argv)
    before = keep_run_identity(args, given) if args.PATH_weight_load else {}   # the resumed run's config
    ks = parse_topk(args.topk)
    select = parse_select(args.select, ks)
    k_sel = int(select.rpartition('@')[2])
    check_flags(args, given)
    ddp = distributed.init_distributed('cpu' if args.no_cuda else args.device, args.loss)   # None without torchrun
    peers.watch(ddp)
    try:
        device = ddp[2] if ddp else resolve_device('cpu' if args.no_cuda else args.device)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    shard = ddp[:2] if ddp else None
    rank0 = ddp is None or ddp[0] == 0
    if not rank0:                           # one process prints, writes metrics and checkpoints
        sys.stdout = open(os.devnull, 'w')
        args.no_progress = True
    seed_everything(args.seed)
    if args.keep_freed_memory:
        keep_freed_memory()
    if rank0:   # the paths given: checked before anything is written (never through a link, never over data)
        if args.PATH_weight_save:   # a resume may write on over its own run's checkpoint, nothing else
            atomic.check_output(args.PATH_weight_save, '--PATH_weight_save',
                                args.overwrite or resumed_into(before, args.PATH_weight_save))
        if args.test_rows:
            atomic.check_output(args.test_rows, '--test_rows', args.overwrite)
    run_dir = distributed.broadcast(run_folder.choose_run_dir(args.save_dir, args.run_name or args.model_name,
                                                              args.PATH_weight_load, args.overwrite)
                                    if rank0 else None, ddp)
    if rank0:
        run_folder.lock(run_dir)   # one writer per run folder: a second train.py on it stops here
    best_path = args.PATH_weight_save or os.path.join(run_dir, run_folder.BEST)
    peers.resume = os.path.join(run_dir, run_folder.LAST)
    metrics_path = os.path.join(run_dir, run_folder.METRICS)
    if rank0:
        run_folder.check_writable(metrics_path, 'run folder file')
        run_folder.check_writable(best_path, '--PATH_weight_save')
        if args.test_rows:
            run_folder.check_writable(args.test_rows, '--test_rows')

    # ---- data and model (built from the flags, or from the checkpoint being resumed)
    ckpt = None
    try:
        if args.data_path == DEMO_PATH and not os.path.exists(os.path.join(DEMO_PATH, 'test.npy')):
            from phr.data import synthetic as generate
            print(f'{DEMO_PATH} not found: generating the demo dataset (seconds, once)')
            generate.run(generate.build_parser().parse_args(['--preset', 'demo']))
        data = load_dataset(args.data_path, allow_pickle=args.allow_pickle, num_neg=args.num_neg)
        if args.PATH_weight_load:
            model, ckpt, hparams = resume(args.PATH_weight_load, data, device, args, given)
        else:
            hparams = model_hparams(args.model_name, model_flags_given(args))
            model = build_model(args.model_name, data, device, **hparams).to(device)
        sampler = TripleSampler(data, args.num_train_neg, args.neg_sampling) if model.trainable else None
    except (DataError, CheckpointError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    spec = get_spec(args.model_name)
    used = model_args(args.model_name, hparams)
    model_info = checkpoint_model_args(args.model_name, used)
    if 'loss' not in given and model.trainable and 'bpr' not in type(model).losses:
        args.loss = type(model).losses[0]   # a model that cannot take the authors' BPR trains with its own loss
    config = dict(vars(args), **{h.cli: used[h.name] for h in spec.hparams},    # the run config: plain values
                  data_fingerprint=data.fingerprint,                           # which data (checkpoint.check_data)
                  data_fingerprint_ids=data.fingerprint_ids)                   # the same, posts' texts left out
    if args.protocol == 'full':
        splits = {'val': full_split(data, data.val).to(device), 'test': full_split(data, data.test).to(device)}
    else:
        splits = {'val': data.val.to(device), 'test': data.test.to(device)}
    losses_ok = type(model).losses + (CANDIDATE_LOSSES[1:] if 'bpr' in type(model).losses else ())
    if model.trainable and args.loss not in losses_ok:
        raise SystemExit(f'error: --loss {args.loss} is not offered for {args.model_name} (it trains with '
                         f'{" / ".join(type(model).losses)}); softmax and bce score every hashtag per row and are '
                         f'the baselines\' native losses')
    if data.num_hashtag <= max(ks):
        print(f'note: {args.data_path} has {data.num_hashtag} hashtag(s): every one is in every top-{max(ks)}, so '
              f'Recall@{max(ks)} is 1 whatever the model; these metrics tell nothing here')
    elif args.protocol == 'sampled':
        short = sum(int((s.valid.sum(1) <= max(ks)).sum()) for s in (data.val, data.test))
        if short:
            rows = len(data.val) + len(data.test)
            print(f'note: {short:,} of the {rows:,} validation and test rows of {args.data_path} rank no more than '
                  f'{max(ks)} candidates (their positives and {data.val.num_neg} negatives): Recall@{max(ks)} is 1 on '
                  f'them whatever the model' + ('; these metrics tell nothing here' if short == rows else '')
                  + '; more negatives per row (scripts/partition.py --num_neg) or --protocol full rank more')
    n_params = sum(p.numel() for p in model.parameters())
    knobs = ' '.join(f'{h.cli}={used[h.name]}' for h in spec.hparams)
    print(f'model: {args.model_name} ({n_params:,} parameters) on {device}' + (f'; {knobs}' if knobs else '')
          + (f'; data-parallel over {ddp[1]} processes' if ddp else ''))
    os.makedirs(run_dir, exist_ok=True)

    # ---- models without training (the popularity floors): evaluated once
    if not model.trainable:
        m = evaluate_splits(model, splits, ks, args.eval_batch, shard)
        print(f'{args.model_name} | val {fmt(m["val"], k_sel)} | test {fmt(m["test"], k_sel)}')
        if rank0:
            atomic.write_text(metrics_path, json.dumps({'epoch': 0, 'loss': None, 'val': m['val'], 'test': m['test'],
                                                        'seconds': 0.0}) + '\n')
            # no weights, but what rebuilds the model (its name and knobs): scripts/recommend.py / full_rank.py serve it
            save_checkpoint(best_path, model, None, 0, {'epoch': 0, 'val': m['val'], 'test': m['test']}, config,
                            model_info)
            if args.test_rows:
                run_folder.write_test_rows(args.test_rows, model, splits['test'], args.eval_batch)
        distributed.finish_distributed(ddp)
        print(f'checkpoint (the model\'s settings; it has no weights) {best_path}')
        return {'epoch': 0, 'best_epoch': 0, 'val': m['val'], 'test': m['test']}

    # ---- optimiser, data order; resume (the run continues: optimiser, random streams, patience)
    groups = param_groups(model, args.weight_decay, args.decay_embeddings)
    optimizer = torch.optim.Adam(groups, lr=args.l_r)
    workers = min(args.num_workers, os.cpu_count() or 1)
    if workers != args.num_workers:
        print(f'num_workers {args.num_workers} > {os.cpu_count()} CPUs here: using {workers}')
    gen = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(sampler, batch_size=args.batch_size, shuffle=True, generator=gen, num_workers=workers,
                        collate_fn=lambda batch: batch,   # TripleSampler.__getitems__ returns the batch tensor
                        # workers made anew each epoch, seeded from ``gen``: a resume (which restores gen) draws
                        # the same negatives as an uninterrupted run, with workers too
                        persistent_workers=False)
    start_epoch, best, since_best = 0, {'epoch': -1, 'val': None, 'test': None}, 0
    if ckpt is not None:
        start_epoch, best, since_best = resume_state(ckpt, optimizer, groups, gen, args)
        if rank0 and best['val'] is not None and not os.path.exists(best_path):
            carry_best(args.PATH_weight_load, best_path, best['epoch'])
    if rank0:   # a resume keeps the lines of the epochs before the checkpoint (written whole before appending)
        kept = [line for line in run_folder.read_metrics(run_dir) if line['epoch'] < start_epoch] \
            if start_epoch > 0 else []
        atomic.write_text(metrics_path, ''.join(json.dumps(line) + '\n' for line in kept))
    epochs_run = start_epoch
    train_model = distributed.wrap(model, device) if ddp else model
    hook = hook_for(model)   # the model's own training behaviour (phr/training/hooks.py), the plain one for most
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
        m, extra = hook.epoch_metrics(model, splits, ks, args.eval_batch, shard, select)
        secs = time.perf_counter() - t0
        improved = best['val'] is None or selection_key(m['val'], select) > selection_key(best['val'], select)
        print(f'epoch {epoch:3d} | loss {loss:.4f} | val {fmt(m["val"], k_sel)} | test {fmt(m["test"], k_sel)} '
              + ''.join(f'| {k} {v:g} ' for k, v in extra.items()) + f'| {secs:.1f}s{" *" if improved else ""}',
              flush=True)
        if rank0:
            atomic.append_line(metrics_path, {'epoch': epoch, 'loss': loss, 'val': m['val'], 'test': m['test'],
                                              'seconds': secs, **extra})
        if improved:
            best, since_best = {'epoch': epoch, 'val': m['val'], 'test': m['test']}, 0
        else:
            since_best += 1
        state = {'since_best': since_best, 'rng': {'torch': torch.get_rng_state(), 'loader': gen.get_state()}}
        if rank0 and improved:
            save_checkpoint(best_path, model, optimizer, epoch, best, config, model_info, state)
        if rank0:
            save_checkpoint(os.path.join(run_dir, run_folder.LAST), model, optimizer, epoch, best, config, model_info,
                            state)
        if since_best >= args.patience > 0:
            print(f'no better validation {select} for {args.patience} epochs: stopping')
            break
    best['epochs_run'] = epochs_run

    # ---- after training: the model's hook on the best checkpoint (what it changes is written back), the rows
    if rank0 and best['val'] is not None and not os.path.exists(best_path):
        raise SystemExit(f'error: the best epoch ({best["epoch"]}, from the resumed checkpoint) has no weights in '
                         f'this run folder ({best_path} was not written: no later epoch beat it, and the resumed '
                         f'run\'s best.pt was not beside {args.PATH_weight_load}); resume into the original folder')
    best_model = None   # the best checkpoint's model, once loaded
    if rank0 and best['val'] is not None and hook.finishes(model):
        best, best_model = finish_run(hook, best_path, run_dir, data, splits, ks, args.eval_batch, device, select,
                                      epochs_run)
    if rank0 and args.test_rows and best['val'] is not None:
        if best_model is None:
            best_model, _ = load_checkpoint(best_path, data, device)
        run_folder.write_test_rows(args.test_rows, best_model, splits['test'], args.eval_batch)
    if best['val'] is not None:
        by = 'R@10, then N@10' if select == 'recall@10' else f'{select}, then its tie-break'
        print(f"best epoch {best['epoch']} (by val {by}) | val {fmt(best['val'], k_sel)} | "
              f"test {fmt(best['test'], k_sel)} | checkpoint {best_path}")
    # the DDP wrapper goes before the process group: freed after it (when main returns), its reducer would hold the
    # group's last reference, and the gloo destructor, joining its worker thread with the GIL held while that thread
    # waits for the GIL to free a finished allreduce's tensors, deadlocks now and then (seen in tests/test_distributed)
    del train_model
    distributed.finish_distributed(ddp)
    return best


def carry_best(resumed, best_path, epoch):
    """A resume into another folder: the resumed run's best.pt (the checkpoint of the best epoch so far) is copied
    into this one, so the best epoch always has its weights in the run folder that reports it."""
    src = os.path.join(os.path.dirname(os.path.abspath(resumed)), run_folder.BEST)
    if os.path.abspath(src) == os.path.abspath(best_path) or not os.path.exists(src):
        return
    try:
        same = read_checkpoint(src).get('epoch') == epoch
    except CheckpointError:   # unreadable: the end of the run says what is missing
        return
    if same:
        import shutil
        atomic.atomic_write(best_path, lambda tmp: shutil.copyfile(src, tmp), '.pt')
        print(f'best epoch so far ({epoch}): its checkpoint copied from {src}')


def finish_run(hook, best_path, run_dir, data, splits, ks, batch_size, device, by, epochs_run):
    """The best checkpoint's model through its hook's ``finish_run``; when that changes the model (a ``Finish``), the
    checkpoint is rewritten with it, its metrics and fields go into the checkpoint's ``best``, and the whole record to
    the run folder's finish.json (what the sweep reads). Returns the run's best and the model as the checkpoint now
    holds it."""
    model, ckpt = load_checkpoint(best_path, data, device)
    best = dict(ckpt.get('best') or {})
    done = hook.finish_run(model, splits, ks, batch_size, by, best)
    if done is None:
        return dict(best, epochs_run=epochs_run), model
    best.update(val=done.val, test=done.test, **done.fields)
    ckpt.update(model=model.state_dict(), best=best)
    write_checkpoint(best_path, ckpt)
    atomic.write_json(os.path.join(run_dir, run_folder.FINISH), {'epoch': best.get('epoch'), 'val': done.val,
                                                                 'test': done.test, 'fields': done.fields,
                                                                 **done.details}, indent=1)
    return dict(best, epochs_run=epochs_run), model


if __name__ == '__main__':
    main()
