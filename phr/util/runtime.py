"""Where a run executes: one device string, one seed, the CPU allocator setting."""
import os
import platform
import random

import numpy as np
import torch


def resolve_device(name):
    """One device string: 'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:N'. ValueError with a clear message."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name} asked for, but this PyTorch sees no CUDA device')
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f'--device {name}: this suite runs on cpu or cuda')
    return device


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory in the process instead of handing it back to the OS.

    PyTorch's CPU tensors come straight from malloc; by default every block over 32 MB is a fresh mmap and freed
    heap tops are trimmed, so each large temporary of a training step (the [triples, 2, d] tensors of the attention)
    is page-faulted in anew; with M_MMAP_MAX = 0 and M_TRIM_THRESHOLD = max they are reused (docs/speed.md has the
    measured effect). The values computed are unchanged. It is the in-process form of the
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


def cpu_name():
    """The CPU's model name (what benchmarks and sweep records say they ran on)."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
