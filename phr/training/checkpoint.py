"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, rebuilt into a model from their own
``model_name`` / ``model_args`` (nanoGPT's ``model_args``), with one clear error per failure."""
import os
import pickle
import zipfile

import torch

from data_load import POSTS_FILE, matches

from phr.util import atomic
from phr.models import registry
from phr.models.registry import MODELS, hparams_from_config, stored_args


class CheckpointError(ValueError):
    """A checkpoint that cannot be turned into a model; the message names the file and the problem."""


def read_checkpoint(path, device='cpu'):
    """torch.load(weights_only=True) of a checkpoint written by train.py, with one clear error per failure."""
    if not os.path.exists(path):
        raise CheckpointError(f'{path}: no such checkpoint')
    if os.path.isdir(path):
        raise CheckpointError(f'{path}: a folder, not a checkpoint file')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file, not a checkpoint')
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated, or not written by torch.save)')
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f'{path}: holds objects other than tensors and plain values (not a checkpoint written '
                              f'by train.py); it is not unpickled, since that could run code stored in it') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f'{path}: not a readable checkpoint (truncated or not written by torch.save: '
                              f'{first})') from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        raise CheckpointError(f'{path}: no model weights in it (not a checkpoint written by train.py)')
    return ckpt


def build_model(name, data, device='cpu', **hparams):
    """``registry.build_model``, with the models a model reads (its ``model_inputs`` knobs name their checkpoints:
    TagRank's ``score_checkpoint``) loaded first, on ``device``, and given to it."""
    inputs = {}
    for knob in getattr(registry.get_spec(name).cls, 'model_inputs', ()):
        path = hparams.get(knob)
        if path:
            inputs[knob] = load_checkpoint(path, data, device)[0]
    return registry.build_model(name, data, inputs=inputs, **hparams)


def check_data(path, ckpt, data):
    """A checkpoint is read only with the dataset it was trained on: its run config's ``data_fingerprint`` (train.py
    writes it) must be ``data.fingerprint``. Checkpoints written before the fingerprint existed are taken as they
    are (nothing to compare)."""
    config = ckpt.get('config') if isinstance(ckpt.get('config'), dict) else {}
    theirs, ours = config.get('data_fingerprint'), getattr(data, 'fingerprint', None)
    ids = config.get('data_fingerprint_ids')
    if theirs and ours and theirs != ours and ids and ids == data.fingerprint_ids:
        raise CheckpointError(f'{path}: {os.path.join(data.path, POSTS_FILE)} changed since this checkpoint was '
                              f'trained (the rest of the dataset is the same): import the posts again, or restore the '
                              f'file')
    if theirs and ours and not matches(theirs, data.path, (ours, data.fingerprint_ids)):
        raise CheckpointError(f'{path} was trained on another dataset ({config.get("data_path")}, fingerprint '
                              f'{theirs}) than {getattr(data, "path", "this one")} (fingerprint {ours}): its ids '
                              f'would name other users, posts and hashtags here; use the dataset it was trained on')


def load_checkpoint(path, data, device='cpu'):
    """Rebuild a model from a checkpoint's own ``model_name`` / ``model_args`` and load its weights.

    Returns (model on ``device`` in eval mode, the checkpoint dict). Checkpoints written before ``model_args``
    existed are rebuilt from their run config. Every problem is a ``CheckpointError`` naming the file.
    """
    ckpt = read_checkpoint(path, device)
    check_data(path, ckpt, data)
    name, args = ckpt.get('model_name'), ckpt.get('model_args')
    if name is None or args is None:   # older checkpoints: the run config holds the flags
        config = ckpt.get('config') if isinstance(ckpt.get('config'), dict) else {}
        if 'model_name' not in config:
            raise CheckpointError(f'{path}: no model_name / model_args in it (not a checkpoint written by train.py)')
        name = config['model_name']
        args = hparams_from_config(name, config) if name in MODELS else {}
    if name not in MODELS:
        raise CheckpointError(f'{path}: model {name!r} is not one of this suite\'s models {tuple(MODELS)}')
    if not isinstance(args, dict):
        raise CheckpointError(f'{path}: model_args is not a dict')
    try:
        model = build_model(name, data, device, **stored_args(name, args))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'{path}: its model_args {args} do not build {name}: {e}') from None
    bad = [k for k, v in (ckpt.get('model') or {}).items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        names = ', '.join(bad[:3]) + (', ...' if len(bad) > 3 else '')
        raise CheckpointError(f'{path}: its weights hold NaN or inf ({names}): a run that diverged; use an earlier '
                              f'checkpoint or train again with a smaller --l_r')
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as e:
        msg = ' '.join(str(e).split())
        trained_on = (ckpt.get('config') or {}).get('data_path')
        raise CheckpointError(f'{path} does not fit {getattr(data, "path", "this dataset")} '
                              f'({name}, {args}; trained on {trained_on}): {msg[:300]}') from None
    return model.to(device).eval(), ckpt


def save_checkpoint(path, model, optimizer, epoch, best, config, model_info, extra=None):
    """model weights + ``model_info`` (model_name, model_args: what rebuilds the model) + the run state."""
    write_checkpoint(path, {'model': model.state_dict(), **model_info,
                            'optimizer': optimizer.state_dict() if optimizer else None,
                            'epoch': epoch, 'best': best, 'config': config, **(extra or {})})


def write_checkpoint(path, ckpt):
    """``torch.save`` through a temporary file: a failed write leaves the previous checkpoint, and one clear error."""
    try:
        atomic.torch_save(path, ckpt)
    except (OSError, RuntimeError) as e:   # a full disk, a folder gone: keep the previous checkpoint, no temporary
        raise SystemExit(f'error: could not write the checkpoint {path} ({e}); the previous one is unchanged')
