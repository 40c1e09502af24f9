"""Data-parallel runs under torchrun: one process per device (NCCL on CUDA, gloo on CPU). Every process draws the
same global batch and takes its share of the rows (train.py's ``train_epoch``); rank 0 prints and writes."""
import os

import torch

from phr.util.runtime import resolve_device


def init_distributed(device_name, loss):
    """Under torchrun (WORLD_SIZE > 1): (rank, world, device), the process group initialised; None for a plain
    single-process run. ``loss``: train.py's --loss (softmax and bce score outside the DDP forward)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return None
    import torch.distributed as dist
    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    try:
        device = resolve_device(device_name)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    if device.type == 'cuda':
        device = torch.device('cuda', local)
        torch.cuda.set_device(device)
    if loss in ('softmax', 'bce'):
        raise SystemExit(f'error: --loss {loss} scores outside the DDP forward; data-parallel runs train with '
                         f'bpr, hard_bpr or sampled_softmax')
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return rank, world, device


def wrap(model, device):
    """The model in DistributedDataParallel (gradients all-reduced; buffers are data, the same on every process)."""
    from torch.nn.parallel import DistributedDataParallel
    import warnings
    with warnings.catch_warnings():   # broadcast_buffers=False is what we mean (data buffers, never synced)
        warnings.simplefilter('ignore', FutureWarning)
        return DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None,
                                       broadcast_buffers=False)


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
