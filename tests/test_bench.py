"""scripts/bench.py: a model given as NAME:LOSS:K is timed at that loss with K negatives (no timing asserted)."""
import os
import sys

import pytest

from conftest import cli


from phr.experiments import bench


def test_model_spec():
    assert bench.model_spec('GCN_PHR') == ('GCN_PHR', 'bpr', 1)
    assert bench.model_spec('GCN_PHR_plus:sampled_softmax:8') == ('GCN_PHR_plus', 'sampled_softmax', 8)
    for bad in ('USHM', 'nope', 'GCN_PHR:softmax:8', 'GCN_PHR:bpr', 'GCN_PHR:bpr:0', 'GCN_PHR:bpr:x'):
        with pytest.raises(Exception, match='graph model|NAME:LOSS:K'):
            bench.model_spec(bad)


def test_bench_rows_name_their_loss(tiny_dir, capsys):
    cli(bench, ['--data_path', tiny_dir, '--models', 'no_att', 'GCN_PHR_plus:sampled_softmax:3', '--steps', '1',
                '--device', 'cpu', '--no-keep_freed_memory'])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ')]
    assert table[0].startswith('| model | aggr | loss x negatives | step s')
    assert table[1].startswith('| no_att | mean | bpr x1 | ') and table[2].startswith('| GCN_PHR_plus | mean | '
                                                                                     'sampled_softmax x3 | ')


def test_nproc_takes_plain_names(tiny_dir, capsys):
    with pytest.raises(SystemExit) as e:
        cli(bench, ['--data_path', tiny_dir, '--models', 'GCN_PHR:sampled_softmax:2', '--nproc', '1'])
    assert e.value.code == 2 and 'give the models by name only' in capsys.readouterr().err


@pytest.mark.parametrize('argv, words', [(['--steps', '0'], '--steps must be at least 1'),
                                         (['--nproc', '0'], '--nproc: every number of processes must be at least 1')])
def test_bad_counts_are_one_clear_error(tiny_dir, capsys, argv, words):
    """Issue 29 (tracebacks): --steps 0 and --nproc 0 are refused by the parser, before any work."""
    with pytest.raises(SystemExit) as e:
        cli(bench, ['--data_path', tiny_dir] + argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and 'Traceback' not in err
