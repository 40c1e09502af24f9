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
