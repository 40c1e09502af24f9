"""scripts/tune.py: the equal-budget sweep end to end on a tiny dataset, resume, and the paired bootstrap."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
import tune  # noqa: E402


def test_paired_bootstrap_hand_computed():
    # two rows, differences 0 and 1: a resampled mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 95% percentile interval is [0, 1] and the mean 0.5
    a = np.array([[0.0, 1.0]])
    b = np.array([[0.0, 0.0]])
    d, lo, hi = tune.paired_bootstrap(a, b, n_boot=4000)
    assert d == 0.5 and lo == 0.0 and hi == 1.0
    assert tune.verdict(lo, hi) == 'not distinguishable'
    # seeds are paired, then averaged per row: a constant difference of 0.2 is an interval of width 0
    a = np.array([[0.5, 0.7, 0.9], [0.6, 0.8, 1.0]])
    b = a - 0.2
    d, lo, hi = tune.paired_bootstrap(a, b)
    assert abs(d - 0.2) < 1e-12 and abs(lo - 0.2) < 1e-12 and abs(hi - 0.2) < 1e-12
    assert tune.verdict(lo, hi) == 'better' and tune.verdict(-hi, -lo) == 'worse'


def test_every_model_gets_the_same_number_of_configurations():
    n = {name: len(tune.configurations(name, 8)) for name in ('GCN_PHR', 'no_att', 'var1', 'Net', 'UTM',
                                                              'ConTagNet', 'CSMN', 'USHM', 'GCN_PHR_plus')}
    assert set(n.values()) == {8}, n
    assert tune.configurations('GCN_PHR', 8) == tune.configurations('GCN_PHR', 8)      # seeded
    assert {'num_layers', 'aggr_mode', 'scoring_mode'} <= set(tune.configurations('GCN_PHR', 8)[0])
    assert set(tune.configurations('USHM', 8)[0]) == {'l_r', 'weight_decay', 'decay_embeddings'}


def test_embedding_decay_is_drawn_per_configuration_and_keeps_earlier_runs(tmp_path):
    for name in ('GCN_PHR', 'USHM', 'GCN_PHR_plus'):
        drawn = tune.configurations(name, 8)
        # the grid's other knobs are drawn as before the switch joined it (earlier runs stay usable)
        grid = tune.space(name)
        every = [dict(zip(sorted(grid), v)) for v in __import__('itertools').product(*(grid[k] for k in sorted(grid)))]
        fixed = set(tune.FIXED.get(name, {})) | {'decay_embeddings'}
        assert [{k: v for k, v in c.items() if k not in fixed} for c in drawn] == \
            __import__('random').Random(f'0:{name}').sample(every, 8)
        # never on where there is no decay to apply
        assert not any(c['decay_embeddings'] for c in drawn if c['weight_decay'] == 0)
    assert any(c['decay_embeddings'] for name in ('GCN_PHR', 'USHM') for c in tune.configurations(name, 8))
    # a run recorded before the switch existed ran with train.py's default (off)
    old = dict(dataset='d', model='USHM', phase='search', index=0, seed=0, status='ok',
               config={'l_r': 0.01, 'weight_decay': 0.1})
    floor = dict(old, model='user_popularity', config={})
    (tmp_path / 'r.jsonl').write_text(json.dumps(old) + '\n' + json.dumps(floor) + '\n')
    got = tune.load_results(str(tmp_path / 'r.jsonl'))
    assert got[0]['config'] == {'l_r': 0.01, 'weight_decay': 0.1, 'decay_embeddings': False}
    assert got[1]['config'] == {}


def test_sweep_end_to_end_and_resume(tiny_dir, tmp_path, capsys):
    before = sorted(os.listdir(tiny_dir))
    argv = ['--datasets', tiny_dir, '--models', 'GCN_PHR', 'USHM', 'user_popularity', '--configs', '2',
            '--max_epoch', '1', '--seeds', '0', '--results', str(tmp_path / 'r.jsonl'), '--rows_dir',
            str(tmp_path / 'rows'), '--save_dir', str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'),
            '--jobs', '2']
    results = tune.main(argv)
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
    slug = tune.dataset_slug(tiny_dir)
    assert os.path.exists(tmp_path / 'rows' / slug / 'history.npz') and os.path.isdir(tmp_path / 'runs' / slug)
    assert "by the user's history" in table
    # each record names the machine it ran on, and the table lists them
    assert all(r['machine'] == tune.machine() for r in results) and f'{tune.machine()} (' in table
    assert '(reference)' in table and ('better' in table or 'worse' in table or 'not distinguishable' in table)
    # run again: nothing left to do, the same file
    n = len(open(tmp_path / 'r.jsonl').readlines())
    capsys.readouterr()
    tune.main(argv)
    assert len(open(tmp_path / 'r.jsonl').readlines()) == n and 'run(s) to do' not in capsys.readouterr().out
    # --report rebuilds the table from the results file alone
    os.remove(tmp_path / 'R.md')
    tune.main(argv + ['--report'])
    assert open(tmp_path / 'R.md').read() == table
    assert all(json.loads(line)['dataset'] == tiny_dir for line in open(tmp_path / 'r.jsonl'))


def test_jobs_2_gives_the_same_rows_as_jobs_1(tiny_dir, tmp_path):
    def sweep(jobs):
        d = tmp_path / f'j{jobs}'
        return tune.main(['--datasets', tiny_dir, '--models', 'no_att', 'UTM', '--configs', '2', '--max_epoch', '2',
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
    results = tune.main(argv)
    seed = next(r for r in results if r['phase'] == 'seed')
    search = tune.selected(results, tiny_dir, 'GCN_PHR')
    assert seed['from_run'].endswith(f"search_{search['index']}_s0")       # no second training
    assert (seed['val'], seed['test'], seed['best_epoch']) == (search['val'], search['test'], search['best_epoch'])
    reused = dict(np.load(os.path.join(tune.ROOT, seed['rows'])))
    # without the checkpoint the run trains again: the same rows
    os.remove(os.path.join(tune.ROOT, seed['from_run'], 'best.pt'))
    with open(tmp_path / 'r.jsonl', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in results if r['phase'] == 'search')
    retrained = next(r for r in tune.main(argv) if r['phase'] == 'seed')
    assert 'from_run' not in retrained and retrained['test'] == seed['test']
    again = np.load(os.path.join(tune.ROOT, retrained['rows']))
    for k in ('recall@10', 'ndcg@10'):
        np.testing.assert_allclose(again[k], reused[k], atol=1e-6)


def test_two_datasets_in_one_sweep(tiny_dir, tiny_copy, tmp_path, capsys):
    # one pool for every dataset and phase: each model's seeds follow its own search, the second dataset's runs
    # follow the first's; every planned run happens exactly once and both datasets reach the table
    results = tune.main(['--datasets', tiny_dir, str(tiny_copy), '--models', 'UTM', 'user_popularity',
                         '--configs', '2', '--max_epoch', '1', '--seeds', '0', '1', '--results',
                         str(tmp_path / 'r.jsonl'), '--rows_dir', str(tmp_path / 'rows'), '--save_dir',
                         str(tmp_path / 'runs'), '--out', str(tmp_path / 'R.md'), '--jobs', '2'])
    keys = [tune.done_key(r) for r in results]
    assert len(keys) == len(set(keys)) == 2 * (2 + 2 + 1)   # per dataset: 2 searched, 2 seeds, 1 floor
    assert all(r['status'] == 'ok' for r in results)
    for d in (tiny_dir, str(tiny_copy)):
        seeds = [r for r in results if r['dataset'] == d and r['model'] == 'UTM' and r['phase'] == 'seed']
        assert sorted(r['seed'] for r in seeds) == [0, 1]
        assert seeds[0]['config'] == tune.selected(results, d, 'UTM')['config']
    out = capsys.readouterr().out
    assert out.count('run(s) to do now') == 2


def test_calibrated_run_from_its_uncalibrated_twin(tiny_dir, tmp_path, monkeypatch):
    # GCN-PHR+ runs that finished before --calibrate_counts joined its settings are calibrated in place from their
    # checkpoints, with the numbers a fresh run with the flag gives
    def sweep(d):
        return tune.main(['--datasets', tiny_dir, '--models', 'GCN_PHR_plus', '--configs', '2', '--max_epoch', '2',
                          '--seeds', '0', '1', '--results', str(d / 'r.jsonl'), '--rows_dir', str(d / 'rows'),
                          '--save_dir', str(d / 'runs'), '--out', str(d / 'R.md')])
    monkeypatch.setattr(tune, 'ABLATIONS', {'GCN_PHR_plus': ('counts',)})   # no count term: nothing to scale
    monkeypatch.setattr(tune, 'FIXED', {})
    tune.planned_keys.cache_clear()
    before = sweep(tmp_path / 'a')
    assert not any('calibrate_counts' in r['config'] for r in before)
    monkeypatch.setattr(tune, 'FIXED', {'GCN_PHR_plus': {'calibrate_counts': True}})
    tune.planned_keys.cache_clear()
    derived = [r for r in sweep(tmp_path / 'a') if r['config'].get('calibrate_counts')]
    # the calibrated records dropped (a sweep stopped before it wrote them): calibrating again gives the same numbers
    kept = [line for line in open(tmp_path / 'a' / 'r.jsonl') if 'calibrate_counts' not in line]
    (tmp_path / 'a' / 'r.jsonl').write_text(''.join(kept))
    again = [r for r in sweep(tmp_path / 'a') if r['config'].get('calibrate_counts')]
    assert [(r['val'], r['test']) for r in again] == [(r['val'], r['test']) for r in derived]
    fresh = sweep(tmp_path / 'b')
    tune.planned_keys.cache_clear()
    assert all(r['config']['calibrate_counts'] for r in fresh)
    key = lambda r: (r['phase'], r['index'], r['seed'])
    assert sorted(map(key, derived)) == sorted(map(key, fresh))
    by_key = {key(r): r for r in fresh}
    assert sum('calibrated_from' in r for r in derived) >= 2          # the searches (and seed 1): no training
    for r in derived:
        f = by_key[key(r)]
        if r['phase'] == 'ablation':                                  # without counts
            assert 'count_scale' not in r and 'count_scale' not in f and r['test'] == f['test']
            continue
        assert 'calibrated_from' not in f and r['count_scale'] == f['count_scale'] in __import__('train').COUNT_SCALES
        assert (r['val'], r['test'], r['best_epoch']) == (f['val'], f['test'], f['best_epoch'])
        if r['phase'] == 'seed':
            a, b = np.load(os.path.join(tune.ROOT, r['rows'])), np.load(os.path.join(tune.ROOT, f['rows']))
            np.testing.assert_allclose(a['ndcg@10'], b['ndcg@10'], atol=1e-6)
    # ablation runs write per-row metrics too, to files of their own (keyed by configuration), and the ablation
    # table pairs them with the full model's, seed by seed
    seeds = {(r['phase'], r['seed']): r for r in fresh if r['phase'] in ('seed', 'ablation')}
    for s in (0, 1):
        full, abl = seeds[('seed', s)], seeds[('ablation', s)]
        assert full['rows'] != abl['rows'] and abl['rows'].endswith(f'_s{s}.npz')
        assert abs(float(np.load(os.path.join(tune.ROOT, abl['rows']))['recall@10'].mean())
                   - abl['test']['recall@10']) < 1e-5
    line = next(x for x in (tmp_path / 'b' / 'R.md').read_text().splitlines() if x.startswith('| without counts |'))
    cells = [c.strip() for c in line.strip('|').split('|')]
    full = tune.seed_rows(fresh, tiny_dir, 'GCN_PHR_plus', [0, 1])
    part = tune.seed_rows(fresh, tiny_dir, 'GCN_PHR_plus', [0, 1], [seeds[('ablation', 0)], seeds[('ablation', 1)]])
    d, lo, hi = tune.paired_bootstrap(full['recall@10'], part['recall@10'])
    assert cells[5] == f'{d:+.4f} [{lo:+.4f}, {hi:+.4f}]' and cells[6] == tune.verdict(lo, hi)


def test_history_shares_against_a_literal_loop(tiny_data):
    # per test row, the share of the post's hashtags that its user tagged some training post with
    used = set(zip(tiny_data.train[:, 0].tolist(), tiny_data.train[:, 2].tolist()))
    t = tiny_data.test
    want = []
    for r in range(len(t)):
        pos = t.candidates[r][t.pos_mask[r]].tolist()
        want.append(sum((int(t.users[r]), h) in used for h in pos) / len(pos))
    got = tune.history_shares(tiny_data)
    assert np.allclose(got, want) and len(got) == len(t)
    assert 0 < (got == 1).sum() + ((got > 0) & (got < 1)).sum() and (got >= 0).all() and (got <= 1).all()


def test_a_run_done_again_supersedes_its_earlier_records():
    base = dict(dataset='d', model='GCN_PHR_plus', config={'l_r': 0.01}, seed=0)
    failed = dict(base, phase='seed', status='failed', rows=None)
    ok = dict(base, phase='seed', status='ok', rows='results/rows/d/x.npz')
    old_ablation = dict(base, phase='ablation', status='ok', rows=None)   # from before ablation runs wrote rows
    new_ablation = dict(base, phase='ablation', status='ok', rows='results/rows/d/y.npz')
    assert not tune.is_done(failed) and tune.is_done(ok)
    assert not tune.is_done(old_ablation) and tune.is_done(new_ablation)
    assert tune.current([failed, ok, old_ablation, new_ablation]) == [ok, new_ablation]
    assert tune.current([ok, failed]) == [ok]                  # a later failure does not hide a finished run
    assert tune.current([old_ablation]) == [old_ablation]      # until it is done again, the old record stays


def test_fixed_joins_every_configuration_of_its_model(monkeypatch):
    monkeypatch.setattr(tune, 'EXTRA_FIXED', {})
    assert tune.parse_fixed('GCN_PHR_plus:count_gate=post') == ('GCN_PHR_plus', 'count_gate', 'post')
    assert tune.parse_fixed('GCN_PHR_plus:counts=false') == ('GCN_PHR_plus', 'counts', False)
    assert tune.parse_fixed('GCN_PHR:l_r=0.01') == ('GCN_PHR', 'l_r', 0.01)
    for bad, says in (('GCN_PHR_plus:nope=1', 'no flag --nope'), ('gcn:l_r=1', 'not in the registry'),
                      ('GCN_PHR_plus:count_gate', 'MODEL:FLAG=VALUE')):
        with pytest.raises(SystemExit, match=says):
            tune.parse_fixed(bad)
    plain = tune.configurations('GCN_PHR_plus', 8)
    tune.EXTRA_FIXED['GCN_PHR_plus'] = {'count_gate': 'post'}
    tried = tune.configurations('GCN_PHR_plus', 8)
    assert tried == [dict(c, count_gate='post') for c in plain]        # the same draws, one more fixed setting
    assert tune.configurations('GCN_PHR', 8) == tune.configurations('GCN_PHR', 8, seed=0)
