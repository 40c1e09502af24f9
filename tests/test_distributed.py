"""Data-parallel training: torchrun, 2 CPU processes (gloo), against one process at the same global batch."""
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torchrun(nproc, tiny_dir, out, *extra, script='train.py', timeout=300):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), script, '--data_path', tiny_dir, '--save_dir', str(out),
           '--no_progress', '--dim_latent', '8', '--device', 'cpu', *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    # output to files, not pipes: a worker left running would hold a pipe open and block the read
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fo, stderr=fe, text=True)
        late = ''
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: torchrun forwards it to its workers, which run in sessions of their own (a SIGKILL
            # of torchrun alone, as subprocess.run's timeout sends, leaves them running)
            late = f' (ran past {timeout} s and was stopped)'
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fo.seek(0), fe.seek(0)
        out, err = fo.read(), fe.read()
    assert proc.returncode == 0, f'torchrun with {nproc} processes: exit {proc.returncode}{late}\n{err[-2000:]}'
    return out


@pytest.fixture(scope='module')
def one_step(tiny_dir, tmp_path_factory):
    """One optimiser step (the global batch holds every training triple) with 1 and with 2 processes."""
    out = tmp_path_factory.mktemp('ddp')
    for model in ('GCN_PHR', 'no_att'):
        for n in (1, 2):
            printed = torchrun(n, tiny_dir, out / f'{model}{n}', '--model_name', model, '--num_epoch', '1',
                               '--batch_size', '4096')
            (out / f'{model}{n}.out').write_text(printed)
    return out


def weights(path):
    return torch.load(path, weights_only=True)['model']


def test_one_step_equals_one_process(one_step):
    a, b = weights(one_step / 'no_att1' / 'no_att' / 'last.pt'), weights(one_step / 'no_att2' / 'no_att' / 'last.pt')
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    a, b = weights(one_step / 'GCN_PHR1' / 'GCN_PHR' / 'last.pt'), weights(one_step / 'GCN_PHR2' / 'GCN_PHR' / 'last.pt')
    for k in a:
        # the attention's condition biases get gradients near zero (a softmax ignores a shift shared by its group),
        # where Adam's normalisation turns summation-order rounding into visible steps: checked to 1e-3 only
        tol = 1e-3 if 'lin_cond' in k and k.endswith('bias') else 1e-6
        assert torch.allclose(a[k], b[k], atol=tol, rtol=0), k


def test_only_rank_0_prints_and_writes(one_step):
    run = one_step / 'no_att2' / 'no_att'
    files = sorted(n for n in os.listdir(run) if n != '.lock')
    assert files == ['best.pt', 'last.pt', 'metrics.jsonl']
    # rank 1 appending too would give the one epoch two lines
    assert [json.loads(line)['epoch'] for line in (run / 'metrics.jsonl').read_text().splitlines()] == [0]
    # what the two processes printed together: each line of the run once, as one process prints it
    two, one = (one_step / 'no_att2.out').read_text(), (one_step / 'no_att1.out').read_text()
    for start in ('data: ', 'model: ', 'epoch   0 |', 'best epoch '):
        assert sum(line.startswith(start) for line in one.splitlines()) == 1, (start, one)
        assert sum(line.startswith(start) for line in two.splitlines()) == 1, (start, two)


def test_two_epochs_same_validation_metrics(tiny_dir, tmp_path):
    logs = {}
    for n in (1, 2):
        out = torchrun(n, tiny_dir, tmp_path / str(n), '--model_name', 'no_att', '--num_epoch', '2',
                       '--batch_size', '256')
        assert out.count('| loss ') == 2 and (n == 1 or 'data-parallel over 2 processes' in out)
        logs[n] = [json.loads(x) for x in open(tmp_path / str(n) / 'no_att' / 'metrics.jsonl')]
    for e1, e2 in zip(logs[1], logs[2]):
        for k, v in e1['val'].items():
            assert round(v, 4) == round(e2['val'][k], 4), (k, v, e2['val'][k])


# ---- a process of the run killed: the others end in one line each, naming the checkpoint to resume from

def workers_of(pid):
    """{RANK: pid} of torchrun ``pid``'s worker processes (its children that carry RANK), read from /proc."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/status') as f:
                ppid = next(int(line.split()[1]) for line in f if line.startswith('PPid:'))
            with open(f'/proc/{entry}/environ', 'rb') as f:
                env = dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == pid and b'RANK' in env:
            found[int(env[b'RANK'])] = int(entry)
    return found


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='finds the workers through /proc')
@pytest.mark.parametrize('victim', [1, 0])
def test_killed_process_ends_in_one_line_and_resumes(victim, tiny_dir, tmp_path):
    import signal
    import time
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py',
           '--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--dim_latent', '8', '--device',
           'cpu', '--model_name', 'no_att', '--num_epoch', '100000', '--patience', '0']
    metrics = tmp_path / 'no_att' / 'metrics.jsonl'
    with open(tmp_path / 'out', 'w+') as fo, open(tmp_path / 'err', 'w+') as fe:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=fo, stderr=fe)
        try:
            deadline = time.monotonic() + 240
            while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / 'err').read_text()[-2000:]
                time.sleep(0.2)
            os.kill(workers_of(proc.pid)[victim], signal.SIGKILL)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        err = (tmp_path / 'err').read_text()
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith('error: ')]
    survivor = 1 - victim
    assert len(ours) == 1 and ours[0].startswith(f'error: process {survivor} of 2: '), err
    last = tmp_path / 'no_att' / 'last.pt'
    assert f'resume with --PATH_weight_load {last} ' in ours[0], ours[0]
    # no traceback of train.py's: the one traceback left is torchrun's own failure report (ChildFailedError)
    assert err.count('Traceback') == 1 and 'ChildFailedError' in err and 'train.py", line' not in err, err

    # nothing lost: the checkpoint named resumes, in one process, and the run goes on from the epoch after it
    from train import main
    epoch = torch.load(last, weights_only=True)['epoch']
    best = main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--dim_latent', '8',
                 '--device', 'cpu', '--model_name', 'no_att', '--num_epoch', str(epoch + 3), '--patience', '0',
                 '--PATH_weight_load', str(last)])
    lines = [json.loads(line)['epoch'] for line in metrics.read_text().splitlines()]
    assert lines == list(range(epoch + 3)) and best['epochs_run'] == epoch + 3


def test_lost_peer_message():
    """The classification behind that line: gloo's and DDP's errors are a lost peer, any other error is not."""
    from phr.training.distributed import Peers
    peers = Peers()
    gloo = RuntimeError('[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error '
                        '[127.0.0.1]:900: Connection reset by peer. This is typically caused by a remote worker '
                        'hanging or bugs in the application. Check the logs of the remote worker. GLHF!')
    assert peers.lost(gloo) is None                       # a single-process run: not ours to turn into a line
    peers.ddp, peers.resume = (1, 4, torch.device('cpu')), '/nowhere/last.pt'
    stop = peers.lost(gloo)
    assert str(stop.code) == ('error: process 1 of 4: another process of this data-parallel run is gone (killed or '
                              'failed; the launcher\'s report names which): Read error [127.0.0.1]:900: Connection '
                              'reset by peer; no epoch had finished: nothing was kept to resume from')
    assert peers.lost(RuntimeError('mat1 and mat2 shapes cannot be multiplied (4x8 and 9x8)')) is None
