"""Data-parallel runs under torchrun: one process per device (NCCL on CUDA, gloo on CPU). Every process draws the
same global batch and takes its share of the rows (train.py's ``train_epoch``); rank 0 prints and writes."""
import os
import re
import signal

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


class Peers:
    """What a data-parallel process says when another process of its run is gone (killed, out of memory, stopped).
    Either its next collective (an all-reduce in the step or the evaluation, DDP's gradient all-reduce in
    ``backward``) fails inside gloo or NCCL, or the launcher, having seen the other process end, stops it with
    SIGTERM first. Both end in one line naming this process, the reason and the checkpoint to resume from
    (``lost`` for the first, the handler ``watch`` installs for the second); any other error is the caller's.
    train.py calls ``watch`` once the process group is up and sets ``resume`` once the run folder is chosen."""

    def __init__(self):
        self.ddp = None      # (rank, world, device) of init_distributed, None for a single-process run
        self.resume = None   # the run folder's last.pt (written at the end of each finished epoch)

    def watch(self, ddp):
        self.ddp = ddp
        if ddp is not None:
            signal.signal(signal.SIGTERM, self._stopped)

    def _stopped(self, signum, frame):
        raise self._exit('stopped by the launcher (SIGTERM: another process of this data-parallel run ended, or the '
                         'run was stopped)')

    def lost(self, error):
        """The ``SystemExit`` to raise for ``error`` (a RuntimeError) when it is a collective losing a peer, else
        None."""
        if self.ddp is None or not is_lost_peer(error):
            return None
        return self._exit(f'another process of this data-parallel run is gone (killed or failed; the launcher\'s '
                          f'report names which): {backend_reason(error)}')

    def _exit(self, why):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # said once: a later SIGTERM ends the process quietly
        rank, world = self.ddp[:2]
        if self.resume and os.path.exists(self.resume):
            then = (f'the epochs finished so far are kept: resume with --PATH_weight_load {self.resume} (the same '
                    f'flags, any number of processes)')
        else:
            then = 'no epoch had finished: nothing was kept to resume from'
        return SystemExit(f'error: process {rank} of {world}: {why}; {then}')


def is_lost_peer(error):
    """Whether ``error`` is a collective of torch.distributed failing (a DistError; gloo and DDP's reducer raise
    plain RuntimeErrors that name their backend or the connection)."""
    import torch.distributed as dist
    if isinstance(error, getattr(dist, 'DistError', ())):
        return True
    return bool(re.search(r'gloo|nccl|connection (reset|closed|refused)|broken pipe', str(error), re.IGNORECASE))


def backend_reason(error):
    """The backend's message in a few words: its first line without the source location and the boilerplate."""
    text = (str(error).strip().splitlines() or [''])[0]
    text = re.sub(r'^\[[^\]]*\]\s*', '', text)                     # [.../gloo/transport/tcp/pair.cc:537]
    text = re.split(r'\.\s+This is typically', text)[0].rstrip('. ')
    return text[:200] or type(error).__name__
