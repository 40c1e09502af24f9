import json

import pytest
import torch

import train


def run(tiny_dir, tmp_path, *extra):
    return train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--dim_latent', '16',
                       '--batch_size', '256', '--l_r', '0.01'] + list(extra))


def test_trains_logs_and_checkpoints(tiny_dir, tmp_path, capsys):
    best = run(tiny_dir, tmp_path, '--num_epoch', '3', '--seed', '1')
    out = capsys.readouterr().out
    assert out.count('| loss ') == 3 and 'val P@10' in out and 'test P@10' in out
    lines = [json.loads(x) for x in open(tmp_path / 'GCN_PHR' / 'metrics.jsonl')]
    assert [x['epoch'] for x in lines] == [0, 1, 2]
    # selection on validation: the best epoch is the argmax of val R@10, its test numbers are reported
    i = max(range(3), key=lambda e: (lines[e]['val']['recall@10'], -e))
    assert best['epoch'] == i and best['test'] == lines[i]['test']
    ckpt = torch.load(tmp_path / 'GCN_PHR' / 'best.pt', weights_only=True)
    assert ckpt['epoch'] == i and ckpt['config']['model_name'] == 'GCN_PHR' and ckpt['config']['dim_latent'] == 16


def test_same_seed_same_numbers(tiny_dir, tmp_path):
    a = run(tiny_dir, tmp_path / 'a', '--num_epoch', '2', '--seed', '3')
    b = run(tiny_dir, tmp_path / 'b', '--num_epoch', '2', '--seed', '3')
    assert a['val'] == b['val']


def test_resume_continues_from_last_epoch(tiny_dir, tmp_path, capsys):
    run(tiny_dir, tmp_path, '--num_epoch', '2')
    capsys.readouterr()
    run(tiny_dir, tmp_path, '--num_epoch', '3', '--PATH_weight_load', str(tmp_path / 'GCN_PHR' / 'last.pt'))
    out = capsys.readouterr().out
    assert 'resumed from' in out and 'epoch   2 |' in out and 'epoch   0 |' not in out
    assert len(open(tmp_path / 'GCN_PHR' / 'metrics.jsonl').readlines()) == 3


def test_nan_loss_stops_with_clear_message(tiny_dir, tmp_path):
    with pytest.raises(SystemExit, match='loss became nan'):
        run(tiny_dir, tmp_path, '--num_epoch', '1', '--l_r', '1e30')


def test_authors_readme_command_parses_verbatim():
    # python train.py --l_r=0.001 --weight_decay=0.1 --batch_size=1024 --dim_latent=64 --num_workers=30
    #   --aggr_mode='mean' --scoring_mode='cat'     (the shell strips the quotes)
    args = train.build_parser().parse_args(['--l_r=0.001', '--weight_decay=0.1', '--batch_size=1024',
                                            '--dim_latent=64', '--num_workers=30', '--aggr_mode=mean',
                                            '--scoring_mode=cat'])
    assert (args.l_r, args.weight_decay, args.aggr_mode, args.num_workers) == (0.001, 0.1, 'mean', 30)


@pytest.mark.parametrize('argv, message', [
    (['--aggr_mode', 'median'], "invalid choice: 'median'"),
    (['--scoring_mode', 'dot'], "invalid choice: 'dot'"),
    (['--model_name', 'GCN'], "invalid choice: 'GCN'"),
])
def test_unknown_flag_values_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_bad_data_path_and_device_give_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r'error: .*nowhere: no such dataset folder'):
        train.main(['--data_path', str(tmp_path / 'nowhere')])
    with pytest.raises(SystemExit, match=r"--device 'gpu0' is not a device"):
        train.main(['--device', 'gpu0'])
    with pytest.raises(SystemExit, match='--topk'):
        train.main(['--topk', 'ten'])


def test_floors_evaluate_without_training(tiny_dir, tmp_path, capsys):
    res = train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--model_name', 'user_popularity'])
    assert res['val']['recall@10'] > 0 and 'user_popularity | val' in capsys.readouterr().out
    # a training flag does nothing for a model evaluated as built: an error that says so
    with pytest.raises(SystemExit, match=r'popularity is not trained .*--l_r, --num_epoch would do nothing'):
        train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--model_name', 'popularity',
                    '--num_epoch', '3', '--l_r', '0.1'])


def test_weight_decay_reaches_weight_matrices_only_by_default(tiny_data):
    from phr.models.registry import build_model
    model = build_model('GCN_PHR', tiny_data, dim=8)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = train.param_groups(model, 0.1)
    decayed = {names[id(p)] for p in groups[0]['params']}
    free = {names[id(p)] for p in groups[1]['params']}
    assert groups[0]['weight_decay'] == 0.1 and groups[1]['weight_decay'] == 0.0
    assert {'user_emb.weight', 'hashtag_emb.weight', 'project.lin.bias'} <= free
    assert {'project.lin.weight', 'layers.0.lin_user.weight', 'scorer.video_in.weight'} <= decayed
    assert decayed | free == set(names.values()) and not decayed & free
    # the flag puts everything back under decay
    groups = train.param_groups(model, 0.1, decay_embeddings=True)
    assert len(groups[0]['params']) == len(names) and not groups[1]['params']
    # and a step with decay only: embeddings unchanged by default (zero gradient), decayed with the flag
    for flag in (False, True):
        opt = torch.optim.Adam(train.param_groups(model, 0.1, flag), lr=0.01)
        before = model.user_emb.weight.detach().clone()
        opt.zero_grad()
        (0 * sum(p.sum() for p in model.parameters())).backward()
        opt.step()
        assert torch.equal(before, model.user_emb.weight.detach()) != flag


def test_resume_with_workers_equals_an_uninterrupted_run(tiny_dir, tmp_path):
    """Issue 29 (8): with DataLoader workers (the authors' command uses --num_workers=30) a resume draws the same
    negatives as the uninterrupted run: workers are made each epoch, seeded from the restored generator."""
    common = ['--num_workers', '1', '--dim_latent', '8', '--batch_size', '64']
    run(tiny_dir, tmp_path / 'a', '--num_epoch', '2', *common)
    run(tiny_dir, tmp_path / 'b', '--num_epoch', '1', *common)
    run(tiny_dir, tmp_path / 'b', '--num_epoch', '2', '--PATH_weight_load', str(tmp_path / 'b' / 'GCN_PHR' / 'last.pt'),
        *common)
    read = lambda d: [json.loads(x)['loss'] for x in open(d / 'GCN_PHR' / 'metrics.jsonl')]   # noqa: E731
    assert read(tmp_path / 'a') == read(tmp_path / 'b') and len(read(tmp_path / 'a')) == 2
