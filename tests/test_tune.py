"""scripts/tune.py and the sweep package: the equal-budget sweep end to end on a tiny dataset, resume, the pinned plan,
the migration of the results file, and the paired bootstrap."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import cli
import torch

from phr.models.plus import COUNT_SCALES

from phr.training import hooks
from phr.sweep import command as tune
from phr.models.registry import search_space
from phr.sweep import records, report, runner, stats
from phr.sweep.plan import Plan, dataset_slug, draw, load_pinned
from phr.sweep.records import config_key

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def test_paired_bootstrap_hand_computed():
    # two rows, differences 0 and 1: a resampled mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 95% percentile interval is [0, 1] and the mean 0.5
    a = np.array([[0.0, 1.0]])
    b = np.array([[0.0, 0.0]])
    d, lo, hi = stats.paired_bootstrap(a, b, n_boot=4000)
    assert d == 0.5 and lo == 0.0 and hi == 1.0
    assert stats.verdict(lo, hi) == 'not distinguishable'
    # seeds are paired, then averaged per row: a constant difference of 0.2 is an interval of width 0
    a = np.array([[0.5, 0.7, 0.9], [0.6, 0.8, 1.0]])
    b = a - 0.2
    d, lo, hi = stats.paired_bootstrap(a, b)
    assert abs(d - 0.2) < 1e-12 and abs(lo - 0.2) < 1e-12 and abs(hi - 0.2) < 1e-12
    assert stats.verdict(lo, hi) == 'better' and stats.verdict(-hi, -lo) == 'worse'


def test_every_model_gets_the_same_number_of_configurations():
    plan = Plan(datasets=[], models=[])
    n = {name: len(plan.configurations(name)) for name in ('GCN_PHR', 'no_att', 'var1', 'Net', 'UTM',
                                                            'ConTagNet', 'CSMN', 'USHM', 'GCN_PHR_plus')}
    assert set(n.values()) == {8}, n
    assert plan.configurations('GCN_PHR') == Plan(datasets=[], models=[]).configurations('GCN_PHR')   # seeded
    assert {'num_layers', 'aggr_mode', 'scoring_mode'} <= set(plan.configurations('GCN_PHR')[0])
    assert set(plan.configurations('USHM')[0]) == {'l_r', 'weight_decay', 'decay_embeddings'}


def test_the_committed_plan_is_pinned_and_inside_each_models_space():
    # results/plan.json holds the configurations the committed runs were drawn with; each lies in its model's
    # declared search space, and the plan uses them while that space is unchanged
    pinned = load_pinned()
    assert set(pinned) == {'GCN_PHR', 'no_att', 'var1', 'Net', 'UTM', 'ConTagNet', 'CSMN', 'USHM', 'GCN_PHR_plus'}
    plan = Plan(datasets=[], models=[])
    for name, pin in pinned.items():
        space = search_space(name)
        assert pin['space'] == space and plan.configurations(name) == pin['configs']
        for c in pin['configs']:
            assert set(c) == set(space) and all(c[k] in space[k] for k in c), (name, c)
            assert not (c['decay_embeddings'] and c['weight_decay'] == 0)
    # a model whose space is not the pinned one draws anew from its own space: one seeded draw, 8 distinct
    # configurations, never embedding decay without weight decay
    changed = Plan(datasets=[], models=[], pinned={'USHM': dict(pinned['USHM'], space={'l_r': [1.0]})})
    drawn = changed.configurations('USHM')
    assert drawn == draw(search_space('USHM'), 8, 0, 'USHM') != pinned['USHM']['configs']
    assert len({config_key(c) for c in drawn}) == 8
    assert not any(c['decay_embeddings'] and c['weight_decay'] == 0 for c in drawn)
    # --configs other than the pinned count draws too
    assert len(Plan(datasets=[], models=[], configs=3).configurations('GCN_PHR')) == 3


def test_migration_leaves_every_table_of_the_report_identical(tmp_path):
    # a sample of the committed results as they were before the rewrite (format 1: configs without
    # decay_embeddings), and the report the sweep wrote from it then: after scripts/migrate_results.py, the
    # report of today's code has the same lines, every table row included, but for the description of the grids
    old = os.path.join(DATA, 'tune_v1_rtweet.jsonl')
    migrated = tmp_path / 'tune.jsonl'
    recs = records.migrate_file(old, str(migrated))
    assert all('decay_embeddings' in r['config'] for r in recs if r['model'] not in ('user_popularity', 'popularity'))
    assert records.migrate_file(str(migrated), str(tmp_path / 'again.jsonl')) == recs   # idempotent
    argv = ['--report', '--datasets', 'rtweet', '--models', 'GCN_PHR', 'UTM', 'GCN_PHR_plus', 'user_popularity',
            'popularity', '--results', str(migrated), '--out', str(tmp_path / 'R.md')]
    cli(tune, argv)
    want = open(os.path.join(DATA, 'tune_v1_rtweet_report.md')).read().splitlines()
    got = (tmp_path / 'R.md').read_text().splitlines()
    assert len(got) == len(want)
    differ = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert [got[i][:50] for i in differ] == [got[2][:50], got[5][:50]]   # the file's name, the grids' sentence
    assert sum(line.startswith('| ') for line in got) > 20


def test_sweep_end_to_end_and_resume(tiny_dir, tmp_path, capsys):
    before = sorted(os.listdir(tiny_dir))
    argv = ['--datasets', tiny_dir, '--models', 'GCN_PHR', 'USHM', 'user_popularity', '--configs', '2',
            '--max_epoch', '1', '--seeds', '0', '--results', str(tmp_path / 'r.jsonl'), '--rows_dir',
            str(tmp_path / 'rows'), '--save_dir', str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'),
            '--jobs', '2']
    results = cli(tune, argv)
    assert [r['status'] for r in results] == ['ok'] * len(results)
    phases = sorted((r['model'], r['phase']) for r in results)
    assert phases == sorted([('GCN_PHR', 'search')] * 2 + [('USHM', 'search')] * 2 +
                            [('GCN_PHR', 'seed'), ('USHM', 'seed'), ('user_popularity', 'seed')])
    # the seed run uses the configuration of best validation Recall@10 among the searched ones
    for model in ('GCN_PHR', 'USHM'):
        search = [r for r in results if r['model'] == model and r['phase'] == 'search']
        seed = next(r for r in results if r['model'] == model and r['phase'] == 'seed')
        assert seed['config'] == max(search, key=lambda r: (r['val']['recall@10'], r['val']['ndcg@10']))['config']
        rows = np.load(os.path.join(tune.ROOT, seed['rows']))
        # the per-row test metrics average to the reported test numbers
        assert abs(rows['recall@10'].mean() - seed['test']['recall@10']) < 1e-5
    table = open(tmp_path / 'R.md').read()
    assert '| GCN-PHR (paper, Fig. 2) |' in table and 'floor: user\'s own frequency' in table
    # runs and per-row files stay under --save_dir / --rows_dir, not in the dataset's folder
    assert sorted(os.listdir(tiny_dir)) == before
    slug = dataset_slug(tiny_dir)
    assert os.path.exists(tmp_path / 'rows' / slug / 'history.npz') and os.path.isdir(tmp_path / 'runs' / slug)
    assert "by the user's history" in table
    # each record names the machine it ran on, and the table lists them
    assert all(r['machine'] == runner.machine() for r in results) and f'{runner.machine()} (' in table
    assert '(reference)' in table and ('better' in table or 'worse' in table or 'not distinguishable' in table)
    # run again: nothing left to do, the same file
    n = len(open(tmp_path / 'r.jsonl').readlines())
    capsys.readouterr()
    cli(tune, argv)
    assert len(open(tmp_path / 'r.jsonl').readlines()) == n and 'run(s) to do' not in capsys.readouterr().out
    # --report rebuilds the table from the results file alone
    os.remove(tmp_path / 'R.md')
    cli(tune, argv + ['--report'])
    assert open(tmp_path / 'R.md').read() == table
    assert all(json.loads(line)['dataset'] == tiny_dir for line in open(tmp_path / 'r.jsonl'))


def test_jobs_2_gives_the_same_rows_as_jobs_1(tiny_dir, tmp_path):
    def sweep(jobs):
        d = tmp_path / f'j{jobs}'
        return cli(tune, ['--datasets', tiny_dir, '--models', 'no_att', 'UTM', '--configs', '2', '--max_epoch', '2',
                          '--seeds', '0', '--results', str(d / 'r.jsonl'), '--rows_dir', str(d / 'rows'),
                          '--save_dir', str(d / 'runs'), '--out', str(d / 'R.md'), '--jobs', str(jobs),
                          '--no-ablations'])
    keep = ('dataset', 'model', 'phase', 'index', 'seed', 'config', 'best_epoch', 'epochs_run', 'val', 'test')
    rows = lambda rs: sorted(json.dumps({k: r[k] for k in keep}, sort_keys=True) for r in rs)
    assert rows(sweep(1)) == rows(sweep(2))
    table = lambda j: [line for line in open(tmp_path / f'j{j}' / 'R.md') if line.startswith('| ')]
    assert table(1) == table(2)


def test_seed_0_is_the_search_run_from_its_checkpoint(tiny_dir, tmp_path):
    argv = ['--datasets', tiny_dir, '--models', 'GCN_PHR', '--configs', '2', '--max_epoch', '2', '--seeds', '0',
            '--results', str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'), '--save_dir',
            str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'), '--no-ablations']
    results = cli(tune, argv)
    seed = next(r for r in results if r['phase'] == 'seed')
    search = Plan(datasets=[], models=[], configs=2).selected(results, tiny_dir, 'GCN_PHR')
    assert seed['from_run'].endswith(f"search_{search['index']}_s0")       # no second training
    assert (seed['val'], seed['test'], seed['best_epoch']) == (search['val'], search['test'], search['best_epoch'])
    reused = dict(np.load(os.path.join(tune.ROOT, seed['rows'])))
    # without the checkpoint the run trains again: the same rows
    os.remove(os.path.join(tune.ROOT, seed['from_run'], 'best.pt'))
    with open(tmp_path / 'r.jsonl', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in results if r['phase'] == 'search')
    retrained = next(r for r in cli(tune, argv) if r['phase'] == 'seed')
    assert 'from_run' not in retrained and retrained['test'] == seed['test']
    again = np.load(os.path.join(tune.ROOT, retrained['rows']))
    for k in ('recall@10', 'ndcg@10'):
        np.testing.assert_allclose(again[k], reused[k], atol=1e-6)


def test_two_datasets_in_one_sweep(tiny_dir, tiny_copy, tmp_path, capsys):
    # one pool for every dataset and phase: each model's seeds follow its own search, the second dataset's runs
    # follow the first's; every planned run happens exactly once and both datasets reach the table
    results = cli(tune, ['--datasets', tiny_dir, str(tiny_copy), '--models', 'UTM', 'user_popularity',
                         '--configs', '2', '--max_epoch', '1', '--seeds', '0', '1', '--results',
                         str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'), '--save_dir',
                         str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'), '--jobs', '2'])
    keys = [records.done_key(r) for r in results]
    assert len(keys) == len(set(keys)) == 2 * (2 + 2 + 1)   # per dataset: 2 searched, 2 seeds, 1 floor
    assert all(r['status'] == 'ok' for r in results)
    for d in (tiny_dir, str(tiny_copy)):
        seeds = [r for r in results if r['dataset'] == d and r['model'] == 'UTM' and r['phase'] == 'seed']
        assert sorted(r['seed'] for r in seeds) == [0, 1]
        assert seeds[0]['config'] == Plan(datasets=[], models=[], configs=2).selected(results, d, 'UTM')['config']
    out = capsys.readouterr().out
    assert out.count('run(s) to do now') == 2


def test_ablation_runs_write_rows_and_pair_with_the_full_model(tiny_dir, tmp_path):
    # after its seeds, each of a model's ablations runs with the same seeds and writes per-row metrics to files of
    # its own (keyed by configuration); the ablation table pairs them with the full model's, seed by seed
    argv = ['--datasets', tiny_dir, '--models', 'GCN_PHR_plus', '--configs', '2', '--max_epoch', '2',
            '--seeds', '0', '1', '--results', str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'),
            '--save_dir', str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'), '--jobs', '2']
    fresh = cli(tune, argv)
    assert all(r['status'] == 'ok' for r in fresh)
    assert sorted({r['phase'] for r in fresh}) == ['ablation', 'search', 'seed']
    assert all(r['count_scale'] in COUNT_SCALES for r in fresh if r['config'].get('counts', True))
    assert all('count_scale' not in r for r in fresh if r['config'].get('counts') is False)
    seeds = {(r['phase'], r['seed'], r['config'].get('counts')): r for r in fresh if r['phase'] != 'search'}
    plan = Plan(datasets=[tiny_dir], models=['GCN_PHR_plus'], configs=2, max_epoch=2, seeds=[0, 1])
    full = report.seed_rows(plan, fresh, tiny_dir, 'GCN_PHR_plus', [0, 1])
    abl = [seeds[('ablation', s, False)] for s in (0, 1)]
    for s, a in zip((0, 1), abl):
        assert a['rows'] != seeds[('seed', s, None)]['rows'] and a['rows'].endswith(f'_s{s}.npz')
        assert abs(float(np.load(os.path.join(tune.ROOT, a['rows']))['recall@10'].mean())
                   - a['test']['recall@10']) < 1e-5
    line = next(x for x in (tmp_path / 'R.md').read_text().splitlines() if x.startswith('| without counts |'))
    cells = [c.strip() for c in line.strip('|').split('|')]
    part = report.seed_rows(plan, fresh, tiny_dir, 'GCN_PHR_plus', [0, 1], abl)
    d, lo, hi = stats.paired_bootstrap(full['recall@10'], part['recall@10'])
    assert cells[5] == f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]' and cells[6] == stats.verdict(lo, hi)


def test_history_shares_against_a_literal_loop(tiny_data):
    # per test row, the share of the post's hashtags that its user tagged some training post with
    used = set(zip(tiny_data.train[:, 0].tolist(), tiny_data.train[:, 2].tolist()))
    t = tiny_data.test
    want = []
    for r in range(len(t)):
        pos = t.candidates[r][t.pos_mask[r]].tolist()
        want.append(sum((int(t.users[r]), h) in used for h in pos) / len(pos))
    got = runner.history_shares(tiny_data)
    assert np.allclose(got, want) and len(got) == len(t)
    assert 0 < (got == 1).sum() + ((got > 0) & (got < 1)).sum() and (got >= 0).all() and (got <= 1).all()


def test_a_run_done_again_supersedes_its_earlier_records():
    base = dict(protocol='sampled', dataset='d', model='GCN_PHR_plus', config={'l_r': 0.01}, seed=0)
    failed = dict(base, phase='seed', status='failed', rows=None)
    ok = dict(base, phase='seed', status='ok', rows='results/rows/d/x.npz')
    old_ablation = dict(base, phase='ablation', status='ok', rows=None)   # from before ablation runs wrote rows
    new_ablation = dict(base, phase='ablation', status='ok', rows='results/rows/d/y.npz')
    assert not records.is_done(failed) and records.is_done(ok)
    assert not records.is_done(old_ablation) and records.is_done(new_ablation)
    assert records.current([failed, ok, old_ablation, new_ablation]) == [ok, new_ablation]
    assert records.current([ok, failed]) == [ok]                  # a later failure does not hide a finished run
    assert records.current([old_ablation]) == [old_ablation]      # until it is done again, the old record stays


def test_fixed_joins_every_configuration_of_its_model():
    assert tune.parse_fixed('GCN_PHR_plus:count_gate=post') == ('GCN_PHR_plus', 'count_gate', 'post')
    assert tune.parse_fixed('GCN_PHR_plus:counts=false') == ('GCN_PHR_plus', 'counts', False)
    assert tune.parse_fixed('GCN_PHR:l_r=0.01') == ('GCN_PHR', 'l_r', 0.01)
    for bad, says in (('GCN_PHR_plus:nope=1', 'has no flag --nope'), ('gcn:l_r=1', 'not in the registry'),
                      ('GCN_PHR_plus:count_gate', 'MODEL:FLAG=VALUE'), ('USHM:num_layers=1', 'USHM has no flag'),
                      ('GCN_PHR:seed=5', 'setting of the protocol'), ('GCN_PHR:data_path=x', 'setting of the protocol')):
        with pytest.raises(SystemExit, match=says):
            tune.parse_fixed(bad)
    plain = Plan(datasets=[], models=[]).configurations('GCN_PHR_plus')
    tried = Plan(datasets=[], models=[], fixed={'GCN_PHR_plus': {'count_gate': 'post'}}).configurations('GCN_PHR_plus')
    assert tried == [dict(c, count_gate='post') for c in plain]        # the same draws, one more fixed setting
    assert Plan(datasets=[], models=[]).configurations('GCN_PHR_plus') == plain   # no state left behind


def test_the_committed_files_are_written_only_by_the_committed_plan(tiny_dir, tmp_path):
    # a smoke run of another plan cannot rewrite RESULTS.md or append to the committed results file
    before = {p: os.path.getmtime(p) for p in (tune.OUT, tune.COMMITTED['sampled']['results'])}
    for extra in ([], ['--results', str(tmp_path / 'r.jsonl')], ['--out', str(tmp_path / 'R.md')]):
        with pytest.raises(SystemExit, match='not the committed plan'):
            cli(tune, ['--datasets', tiny_dir, '--models', 'popularity', '--max_epoch', '1', '--seeds', '0',
                       '--rows_dir', str(tmp_path / 'rows')] + extra)
    with pytest.raises(SystemExit, match='no such file'):
        cli(tune, ['--report', '--results', str(tmp_path / 'typo.jsonl'), '--out', str(tmp_path / 'R.md'),
                   '--rows_dir', str(tmp_path / 'rows'), '--datasets', tiny_dir])
    with pytest.raises(SystemExit, match='is a folder'):
        cli(tune, ['--report', '--results', str(tmp_path), '--out', str(tmp_path / 'R.md'),
                   '--rows_dir', str(tmp_path / 'rows'), '--datasets', tiny_dir])
    (tmp_path / 'r.jsonl').write_text('')
    with pytest.raises(SystemExit, match='--out .*: is a folder'):
        cli(tune, ['--report', '--results', str(tmp_path / 'r.jsonl'), '--out', str(tmp_path),
                   '--rows_dir', str(tmp_path / 'rows'), '--datasets', tiny_dir])
    assert before == {p: os.path.getmtime(p) for p in before}


def test_a_damaged_results_line_is_reported_and_a_cut_line_never_swallows_the_next(tmp_path, capsys):
    path = tmp_path / 'r.jsonl'
    good = dict(protocol='sampled', dataset='d', model='popularity', phase='seed', index=0, seed=0, config={},
                status='ok')
    records.append(str(path), good)
    with open(path, 'a') as f:
        f.write('{"protocol": "sampled", "dataset": "d", "mod')   # a kill -9 in the middle of a write
    records.append(str(path), dict(good, seed=1))
    with open(path, 'a') as f:
        f.write('null\n{}\n')
    got = records.load(str(path))
    assert [r['seed'] for r in got] == [0, 1]
    said = capsys.readouterr().out
    assert 'r.jsonl:2: not a whole run record' in said and ':4:' in said and ':5:' in said


def test_failed_runs_and_missing_devices_are_errors(tiny_dir, tmp_path, capsys):
    """Issue 29 (12): a device this machine lacks is refused before any run; a sweep whose runs FAILED exits with
    an error naming them (their records are kept: the next invocation tries them again)."""
    own = ['--results', str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'),
           '--out', str(tmp_path / 'R.md'),
           '--save_dir', str(tmp_path / 'runs')]
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--devices: .*no CUDA device'):
            cli(tune, ['--datasets', tiny_dir, '--models', 'popularity', '--devices', 'cuda:0'] + own)
        assert not (tmp_path / 'r.jsonl').exists()
    with pytest.raises(SystemExit, match=r'1 run\(s\) FAILED'):
        cli(tune, ['--datasets', tiny_dir, '--models', 'UTM', '--seeds', '0', '--configs', '1', '--max_epoch', '1',
                   '--fixed', 'UTM:l_r=-1'] + own)
    recs = records.load(str(tmp_path / 'r.jsonl'))
    assert [r['status'] for r in recs] == ['failed'] and '--l_r must be positive' in recs[0]['error']


def test_a_changed_budget_or_dataset_runs_again(tiny_copy, tmp_path, capsys):
    """Issue 29 (7): a run's record says its budget (max_epoch, patience, batch size) and its dataset's fingerprint;
    a sweep with another budget, or over a dataset regenerated under the same name, does not reuse it."""
    own = ['--results', str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'),
           '--out', str(tmp_path / 'R.md'),
           '--save_dir', str(tmp_path / 'runs'), '--datasets', tiny_copy, '--models', 'UTM', 'popularity',
           '--configs', '1', '--seeds', '0', '--no-ablations', '--batch_size', '64']
    cli(tune, own + ['--max_epoch', '1'])
    first = records.load(str(tmp_path / 'r.jsonl'))
    assert len(first) == 3 and {r['budget']['max_epoch'] for r in first if r['model'] == 'UTM'} == {1}
    assert [r['budget'] for r in first if r['model'] == 'popularity'] == [None]
    cli(tune, own + ['--max_epoch', '1'])                              # the same plan: nothing runs again
    assert len(records.load(str(tmp_path / 'r.jsonl'))) == 3
    cli(tune, own + ['--max_epoch', '2'])                              # another budget: UTM again, not the floor
    again = records.load(str(tmp_path / 'r.jsonl'))[3:]
    assert sorted(r['model'] for r in again) == ['UTM', 'UTM'] and {r['budget']['max_epoch'] for r in again} == {2}
    test = np.load(os.path.join(tiny_copy, 'test.npy'))
    np.save(os.path.join(tiny_copy, 'test.npy'), test[::-1].copy())   # regenerated under the same name
    cli(tune, own + ['--max_epoch', '2'])
    last = records.load(str(tmp_path / 'r.jsonl'))[5:]
    assert sorted(r['model'] for r in last) == ['UTM', 'UTM', 'popularity']
    assert len({r['data_fingerprint'] for r in last} | {first[0]['data_fingerprint']}) == 2
