"""What a careless user hits (issue: nothing lost, nothing silent): each bad input ends in one line that names the
file or flag and the problem, with a non-zero exit and no traceback, or is handled correctly; nothing a user made
is lost. A data-parallel run that loses a process (torchrun, a rank killed) is in tests/test_distributed.py."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import cli
import torch

from phr.data import synthetic as generate
from phr.data import posts as import_posts
from phr.data import partition
from phr import serve as recommend
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_line_error(fn, *words):
    """fn() exits with a one-line 'error: ...' message holding every word; returns the message."""
    with pytest.raises(SystemExit) as e:
        fn()
    msg = str(e.value.code)
    assert msg.startswith('error: ') and '\n' not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def train_floor(path, tmp_path, *extra):
    return train.main(['--data_path', path, '--model_name', 'user_popularity', '--save_dir', str(tmp_path / 'runs'),
                       '--no_progress', *extra])


# ---------------------------------------------------------------------------------------------- data files

def _edit(path, name, fn):
    a = np.load(os.path.join(path, name))
    np.save(os.path.join(path, name), fn(a))


@pytest.mark.parametrize('case, edit, extra, words', [
    ('truncated val.npy', lambda p: _edit(p, 'val.npy', lambda a: a[:, :2 + 50].copy()), [],
     ['val.npy', 'is not one of the video\'s hashtags', 'cut short']),
    ('--num_neg too small', None, ['--num_neg', '5'], ['val.npy', 'not one of the video\'s hashtags', '--num_neg 5']),
    ('-1 as a val user', lambda p: _edit(p, 'val.npy', lambda a: np.concatenate([[[-1]], a[:1, 1:]], 1)
                                            .repeat(len(a), 0)), [], ['val.npy', 'user (column 0) id -1 outside']),
    ('-1 in train.npy', lambda p: _edit(p, 'train.npy', lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0,
                                                                           -1, a)), [],
     ['train.npy', 'user (column 0) id -1 outside']),
    ('-1 mid-row of video_hashtag.npy', lambda p: _edit(p, 'video_hashtag.npy', lambda a: np.concatenate(
        [a[:, :1], np.full((len(a), 1), -1), a[:, 1:]], 1)), [], ['video_hashtag.npy', 'padding must only come']),
    ('duplicate user name', lambda p: open(os.path.join(p, 'user_list.txt'), 'r+').write('user_00001\n'), [],
     ['user_list.txt', 'listed twice']),
])
def test_bad_dataset_files(tiny_copy, tmp_path, case, edit, extra, words):
    if edit:
        edit(tiny_copy)
    one_line_error(lambda: train_floor(tiny_copy, tmp_path, *extra), *words)


def test_each_file_reads_its_own_negative_count(tiny_copy, tmp_path):
    # a test file with 40 negatives per row beside a val file with 50: each is read as it is
    U = len(open(os.path.join(tiny_copy, 'user_list.txt')).readlines())
    a = np.load(os.path.join(tiny_copy, 'test.npy'))
    np.save(os.path.join(tiny_copy, 'test.npy'), np.concatenate([a[:, :2 + 40], a[:, 2 + 50:]], 1))
    from data_load import load_dataset
    d = load_dataset(tiny_copy, verbose=False)
    assert d.val.num_neg == 50 and d.test.num_neg == 40 and U == d.num_user


# ---------------------------------------------------------------------------------------------- flags

@pytest.mark.parametrize('argv, words', [
    (['--device', 'mps'], ['--device mps', 'cpu or cuda']),
    (['--seed', '-1'], ['--seed cannot be negative']),
    (['--l_r', 'nan'], ['--l_r must be a finite number']),
    (['--weight_decay', 'nan'], ['--weight_decay must be a finite number']),
    (['--num_train_neg', '0'], ['--num_train_neg must be positive']),
    (['--eval_batch', '-5'], ['--eval_batch must be positive']),
])
def test_bad_flags(tiny_dir, tmp_path, argv, words):
    one_line_error(lambda: train_floor(tiny_dir, tmp_path, *argv), *words)


def test_outputs_are_checked_before_any_work(tiny_dir, tmp_path, capsys):
    f = tmp_path / 'a_file'
    f.write_text('x')
    one_line_error(lambda: train.main(['--data_path', tiny_dir, '--save_dir', str(f)]), '--save_dir', 'is a file')
    t0 = time.perf_counter()
    one_line_error(lambda: train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path / 'r'),
                                       '--PATH_weight_save', str(f / 'best.pt')]), '--PATH_weight_save', 'cannot write')
    assert time.perf_counter() - t0 < 5 and 'epoch' not in capsys.readouterr().out
    assert not list(tmp_path.rglob('*.tmp'))


# ---------------------------------------------------------------------------------------------- nothing lost

def test_rerun_never_overwrites_an_earlier_run(tiny_dir, tmp_path, capsys):
    common = ['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--run_name', 'r', '--no_progress',
              '--dim_latent', '8']
    train.main(common + ['--num_epoch', '2'])
    before = {n: (tmp_path / 'r' / n).read_bytes() for n in ('best.pt', 'metrics.jsonl', 'last.pt')}
    train.main(common + ['--num_epoch', '1', '--l_r', '1e-4'])
    assert 'writing this one to' in capsys.readouterr().out
    assert {n: (tmp_path / 'r' / n).read_bytes() for n in before} == before
    assert (tmp_path / 'r_2' / 'best.pt').exists()
    train.main(common + ['--num_epoch', '1', '--overwrite'])     # asked for: replaced
    assert (tmp_path / 'r' / 'metrics.jsonl').read_bytes() != before['metrics.jsonl']


def test_failed_save_keeps_the_previous_checkpoint(tiny_dir, tmp_path, monkeypatch):
    common = ['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--dim_latent', '8',
              '--overwrite']
    train.main(common + ['--num_epoch', '1'])
    before = (tmp_path / 'GCN_PHR' / 'best.pt').read_bytes()
    real_save = torch.save

    def full_disk(obj, path, *a, **k):
        real_save(obj, path, *a, **k)     # a partial file is written, then the disk is full
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(torch, 'save', full_disk)
    one_line_error(lambda: train.main(common + ['--num_epoch', '1']), 'could not write the checkpoint',
                   'No space left', 'previous one is unchanged')
    assert (tmp_path / 'GCN_PHR' / 'best.pt').read_bytes() == before
    assert not list(tmp_path.rglob('*.tmp'))


def _jsonl(path, posts):
    path.write_text(''.join(json.dumps(p) + '\n' for p in posts), encoding='utf-8')
    return str(path)


def _write(path, data):
    path.write_bytes(data)
    return str(path)


GOOD = [{'author': f'u{u}', 'post_id': f'{u}_{i}', 'text': f'post {i} about topic {u}',
         'hashtags': [f'tag{(u + i) % 5}', f'topic{u}']} for u in range(3) for i in range(8)]


def test_failed_reimport_keeps_the_earlier_dataset(tmp_path):
    out = tmp_path / 'D'
    cli(import_posts, [_jsonl(tmp_path / 'good.jsonl', GOOD), '--out', str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = [dict(p, hashtags=['a', 'b']) for p in GOOD]            # two hashtags on every post: nothing to rank
    one_line_error(lambda: cli(import_posts, [_jsonl(tmp_path / 'bad.jsonl', bad), '--out', str(out), '--overwrite']))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ['D', 'bad.jsonl', 'good.jsonl']      # no temporary folder left


@pytest.mark.parametrize('case, make, words', [
    ('\\r in a post id', lambda d: _jsonl(d / 'x.jsonl', [dict(GOOD[0], post_id='1\r2')] + GOOD[1:]),
     ['post id', 'line break']),
    ('null hashtags', lambda d: _jsonl(d / 'x.jsonl', [dict(GOOD[0], hashtags=None)] + GOOD[1:]),
     ['record 1', '"hashtags" must be a list of strings']),
    ('number hashtags', lambda d: _jsonl(d / 'x.jsonl', [dict(GOOD[0], hashtags=[1, 2])] + GOOD[1:]),
     ['"hashtags" must be a list of strings']),
    ('object hashtags', lambda d: _jsonl(d / 'x.jsonl', [dict(GOOD[0], hashtags={'a': 1})] + GOOD[1:]),
     ['"hashtags" must be a list of strings']),
    ('latin-1 CSV', lambda d: _write(d / 'x.csv', 'author,post_id,text,hashtags\nz\xe9,1,caf\xe9,a\n'
                                     .encode('latin-1')), ['x.csv', 'not UTF-8']),
    ('corrupt .json.gz', lambda d: _write(d / 'x.json.gz', gzip.compress(bytes(range(256)) * 50)[:300]),
     ['x.json.gz', 'cannot be read']),
    ('deeply nested JSON', lambda d: _write(d / 'x.json', b'[' * 100000 + b']' * 100000),
     ['x.json', 'nested too deeply']),
])
def test_bad_posts(tmp_path, case, make, words):
    src = make(tmp_path)
    one_line_error(lambda: cli(import_posts, [src, '--out', str(tmp_path / 'out')]), *words)
    assert not (tmp_path / 'out').exists()


def test_import_out_is_a_file(tmp_path):
    (tmp_path / 'f').write_text('x')
    one_line_error(lambda: cli(import_posts, [_jsonl(tmp_path / 'g.jsonl', GOOD), '--out', str(tmp_path / 'f')]),
                   '--out', 'is a file')


@pytest.mark.parametrize('argv, words', [
    (['--tags_per_video', '0'], ['--tags_per_video must be at least 1']),
    (['--hashtags_per_topic', '0'], ['--hashtags_per_topic must be at least 1']),
    (['--synonyms', '0'], ['--synonyms must be at least 1']),
    (['--scale', 'nan'], ['--scale must be a finite number']),
    (['--personal', '2'], ['--personal is a probability']),
])
def test_bad_generator_knobs(tmp_path, argv, words):
    one_line_error(lambda: cli(generate, ['--preset', 'demo', '--scale', '0.1', '--out', str(tmp_path / 'g')] + argv),
                   *words)


def test_generate_out_is_a_file(tmp_path):
    (tmp_path / 'f').write_text('x')
    one_line_error(lambda: cli(generate, ['--preset', 'demo', '--out', str(tmp_path / 'f')]), '--out', 'is a file')


def test_partition_of_an_empty_video_info(tiny_copy):
    open(os.path.join(tiny_copy, 'video_info.txt'), 'w').close()
    one_line_error(lambda: cli(partition, [tiny_copy]), 'video_info.txt', '0 lines')


def test_recommend_features_of_two_posts(tiny_dir, tmp_path):
    train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--num_epoch', '1',
                '--dim_latent', '8'])
    from data_load import load_dataset
    d = load_dataset(tiny_dir, verbose=False)
    F = d.features.size(1)
    np.save(tmp_path / 'two.npy', np.zeros((2, F // 2), np.float32))
    one_line_error(lambda: cli(recommend, ['--checkpoint', str(tmp_path / 'GCN_PHR' / 'best.pt'), '--data_path',
                                           tiny_dir, '--author', d.user_names[0], '--features',
                                           str(tmp_path / 'two.npy')]), 'two.npy', 'shape [2, 1138]', 'one post')


# ---------------------------------------------------------------------------------------------- resume

def test_resume_takes_the_flags_given_now(tiny_dir, tmp_path, capsys):
    common = ['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--dim_latent', '8']
    train.main(common + ['--num_epoch', '1'])
    train.main(common + ['--num_epoch', '2', '--l_r', '0.5', '--weight_decay', '0',
                         '--PATH_weight_load', str(tmp_path / 'GCN_PHR' / 'last.pt')])
    assert 'resuming with --l_r 0.5 (the checkpoint ran with 0.005)' in capsys.readouterr().out
    ckpt = torch.load(tmp_path / 'GCN_PHR' / 'last.pt', weights_only=True)
    assert [g['lr'] for g in ckpt['optimizer']['param_groups']] == [0.5, 0.5]
    assert [g['weight_decay'] for g in ckpt['optimizer']['param_groups']] == [0.0, 0.0]
    assert ckpt['config']['l_r'] == 0.5


def _metrics(path):
    return [json.loads(x) for x in open(path)]


def test_kill_9_and_resume_equals_an_uninterrupted_run(tiny_dir, tmp_path):
    """Train 3 epochs; again, killed (SIGKILL) during epoch 1 and resumed from last.pt: every epoch's metrics and
    loss are the same."""
    common = [sys.executable, 'train.py', '--data_path', tiny_dir, '--no_progress', '--dim_latent', '8',
              '--batch_size', '8', '--num_epoch', '3', '--patience', '1', '--l_r', '0.01']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run(common + ['--save_dir', str(tmp_path / 'a')], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(common + ['--save_dir', str(tmp_path / 'b')], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / 'b' / 'GCN_PHR' / 'last.pt'
    deadline = time.time() + 600                      # a loaded machine (a sweep on every core) is slow, not wrong
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists(), 'epoch 0 did not end within the deadline'
    time.sleep(0.3)                                   # into epoch 1
    assert proc.poll() is None, 'the run ended before it could be killed'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _metrics(tmp_path / 'b' / 'GCN_PHR' / 'metrics.jsonl')
    assert 1 <= len(done) < 3
    subprocess.run(common + ['--save_dir', str(tmp_path / 'b'), '--PATH_weight_load', str(last)], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    a = _metrics(tmp_path / 'a' / 'GCN_PHR' / 'metrics.jsonl')
    b = _metrics(tmp_path / 'b' / 'GCN_PHR' / 'metrics.jsonl')
    strip = lambda ms: [{k: v for k, v in m.items() if k != 'seconds'} for m in ms]
    assert strip(a) == strip(b)
    assert not list(tmp_path.rglob('*.tmp'))


@pytest.mark.parametrize('cmd, words', [
    (['train.py', '--device', 'mps'], 'cpu or cuda'),
    (['train.py', '--seed', '-1'], '--seed cannot be negative'),
    (['scripts/generate.py', '--personal', '2'], '--personal is a probability'),
    (['scripts/recommend.py', '--checkpoint', 'nowhere.pt', '--data_path', 'Data/demo', '--author', 'x', '--text', 'y'],
     'nowhere.pt: no such checkpoint'),
])
def test_command_lines_exit_non_zero_without_traceback(cmd, words, tiny_dir):
    cmd = [a if a != 'Data/demo' else tiny_dir for a in cmd]
    res = subprocess.run([sys.executable] + cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and 'Traceback' not in res.stderr, res.stderr
    assert words in res.stderr and res.stderr.strip().count('\n') == 0, res.stderr


# ---- the importer never deletes what a user made (issue 29, "data lost" 1)

def _tree(path):
    return sorted(os.path.relpath(os.path.join(r, n), path) for r, ds, fs in os.walk(path) for n in ds + fs)


def test_import_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    data = tmp_path / 'Data'
    (data / 'demo').mkdir(parents=True)
    (data / 'README.md').write_text('tracked')
    (data / 'demo' / 'train.npy').write_bytes(b'x')
    src = _jsonl(tmp_path / 'good.jsonl', GOOD)
    before = _tree(data)
    for extra in ([], ['--overwrite']):
        one_line_error(lambda: cli(import_posts, [src, '--out', str(data)] + extra), str(data), 'not a dataset folder',
                       'README.md')
    assert _tree(data) == before and (data / 'README.md').read_text() == 'tracked'
    assert sorted(os.listdir(tmp_path)) == ['Data', 'good.jsonl']


def test_import_refuses_the_current_folder(tmp_path, monkeypatch):
    src = _jsonl(tmp_path / 'good.jsonl', GOOD)
    monkeypatch.chdir(tmp_path)
    one_line_error(lambda: cli(import_posts, [src, '--out', '.', '--overwrite']), '--out .', 'current folder')
    assert sorted(os.listdir(tmp_path)) == ['good.jsonl']          # no '..importing-PID' folder either


@pytest.mark.parametrize('overwrite', [False, True])
def test_import_refuses_an_input_inside_out(tmp_path, overwrite):
    out = tmp_path / 'imp' / 'x'
    out.mkdir(parents=True)
    src = _jsonl(out / 'raw.jsonl', GOOD)
    one_line_error(lambda: cli(import_posts, [src, '--out', str(out)] + ['--overwrite'] * overwrite),
                   'holds the input', 'raw.jsonl')
    assert os.listdir(out) == ['raw.jsonl']


def test_import_over_a_dataset_needs_overwrite(tmp_path):
    out = tmp_path / 'D'
    cli(import_posts, [_jsonl(tmp_path / 'good.jsonl', GOOD), '--out', str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    more = GOOD + [dict(p, post_id=p['post_id'] + 'b') for p in GOOD]
    again = _jsonl(tmp_path / 'more.jsonl', more)
    one_line_error(lambda: cli(import_posts, [again, '--out', str(out)]), str(out), '--overwrite')
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # its own cleaned posts.jsonl as the input: it lies inside --out, so it is refused even with --overwrite
    one_line_error(lambda: cli(import_posts, [str(out / 'posts.jsonl'), '--out', str(out), '--overwrite']),
                   'holds the input')
    cli(import_posts, [again, '--out', str(out), '--overwrite'])
    assert len(open(out / 'video_list.txt').read().split()) == len(more)


def test_import_reads_a_csv_with_a_byte_order_mark(tmp_path):
    """An Excel 'CSV UTF-8' export starts with a BOM: the first column is still 'hashtags', not '\\ufeffhashtags'."""
    rows = [f'"{" ".join(p["hashtags"])}",{p["author"]},{p["post_id"]},{p["text"]} #other' for p in GOOD]
    src = tmp_path / 'posts.csv'
    src.write_bytes(('\ufeffhashtags,author,post_id,text\n' + '\n'.join(rows) + '\n').encode('utf-8'))
    posts, _ = import_posts.read_posts([str(src)])
    assert [p['hashtags'] for p in posts] == [p['hashtags'] for p in GOOD]    # the column, not the text's #other


def test_import_unescapes_twitter_html_entities():
    t = {'id_str': '1', 'full_text': 'R &amp; D &lt;3 &gt; &quot;ok&quot; #x',
         'entities': {'hashtags': [{'text': 'x'}]}}
    post = import_posts._tweet_post(t, 'me')
    assert post['text'] == 'R & D <3 > "ok" #x'
    assert 'amp' not in import_posts.strip_text(post['text'])


def _sampler_data(tags_of_video, H):
    from types import SimpleNamespace
    ptr = np.cumsum([0] + [len(t) for t in tags_of_video])
    idx = np.concatenate([np.asarray(t) for t in tags_of_video])
    train = torch.tensor([[0, v, t[0]] for v, t in enumerate(tags_of_video)])
    return SimpleNamespace(train=train, num_hashtag=H, vh_ptr=torch.from_numpy(ptr).long(),
                           vh_idx=torch.from_numpy(idx).long(), train_hashtags=torch.arange(H), path='mem')


def test_a_post_with_most_hashtags_still_gets_its_few_negatives():
    """Issue 29 (14): a post carrying 1,002 of 1,020 training hashtags has 18 valid negatives; the sampler finds
    them (rejection first, then an exact draw) instead of claiming it carries every training hashtag."""
    from phr.training.sampling import TripleSampler
    H = 1020
    data = _sampler_data([list(range(1002)), list(range(1002, H))], H)
    torch.manual_seed(0)
    batch = TripleSampler(data, num_neg=40).__getitems__([0] * 50)
    assert batch.shape == (50, 43)
    assert bool((batch[:, 3:] >= 1002).all())                     # every negative among the 18 left
    assert len(torch.unique(batch[:, 3:])) > 9


def test_a_post_with_every_hashtag_is_one_clear_error():
    from data_load import DataError
    from phr.training.sampling import TripleSampler
    data = _sampler_data([list(range(5)), [0]], 5)
    with pytest.raises(DataError, match='video 0: it carries every training hashtag'):
        TripleSampler(data).__getitems__([0])


def test_a_second_writer_of_a_run_folder_is_refused(tiny_dir, tmp_path):
    """Issue 29 (3): two train.py on one --save_dir/--run_name at once: the second stops with one clear error
    instead of both writing best.pt and an interleaved metrics.jsonl; the lock goes with its process."""
    run = tmp_path / 'runs' / 'same'
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, '-c', 'import fcntl, sys, time; f = open(sys.argv[1], "a+"); '
                               'fcntl.flock(f, fcntl.LOCK_EX); f.write("pid 4242\\n"); f.flush(); print("held", '
                               'flush=True); time.sleep(60)', str(run / '.lock')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        argv = ['--data_path', tiny_dir, '--model_name', 'user_popularity', '--save_dir', str(tmp_path / 'runs'),
                '--run_name', 'same', '--no_progress']
        one_line_error(lambda: train.main(argv), str(run), 'another train.py is writing it', 'pid 4242')
        assert not (run / 'metrics.jsonl').exists()
    finally:
        holder.kill()
        holder.wait()
    best = train.main(argv)                       # the holder is gone (as after a kill -9): the folder is free
    assert best['val']['recall@10'] > 0 and (run / 'metrics.jsonl').exists()
    assert train.main(argv + ['--overwrite'])['val'] == best['val']   # the same process may take it again


def test_a_checkpoint_of_another_dataset_is_refused(tiny_dir, tiny_copy, tmp_path):
    """Issue 29 (9): a dataset of the same sizes but other contents (here: the test rows reordered) is not the one
    a checkpoint was trained on: resume, scripts/recommend.py and full_rank.py refuse it by the dataset's fingerprint."""
    from phr.training.checkpoint import CheckpointError, load_checkpoint
    from data_load import fingerprint, load_dataset
    from phr.experiments import full_rank
    train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path), '--no_progress', '--num_epoch', '1',
                '--dim_latent', '8'])
    ckpt = str(tmp_path / 'GCN_PHR' / 'best.pt')
    assert fingerprint(tiny_copy) == fingerprint(tiny_dir)            # a copy is the same dataset
    test = np.load(os.path.join(tiny_copy, 'test.npy'))
    np.save(os.path.join(tiny_copy, 'test.npy'), test[::-1].copy())
    other = load_dataset(tiny_copy, verbose=False)
    assert other.fingerprint != fingerprint(tiny_dir)
    with pytest.raises(CheckpointError, match='trained on another dataset'):
        load_checkpoint(ckpt, other)
    load_checkpoint(ckpt, load_dataset(tiny_dir, verbose=False))     # its own dataset: fine
    one_line_error(lambda: train.main(['--data_path', tiny_copy, '--PATH_weight_load', ckpt, '--save_dir',
                                       str(tmp_path / 'r'), '--no_progress', '--num_epoch', '2']),
                   'trained on another dataset')
    data = load_dataset(tiny_dir, verbose=False)
    one_line_error(lambda: cli(recommend, ['--checkpoint', ckpt, '--data_path', tiny_copy, '--author',
                                           data.user_names[0], '--video', data.video_names[0]]),
                   'trained on another dataset')
    one_line_error(lambda: cli(full_rank, ['--data_path', tiny_copy, f'x={ckpt}']), 'trained on another dataset')


def test_resume_into_a_new_folder_keeps_the_best_epochs_weights(tiny_dir, tmp_path, capsys):
    """Issue 29: resumed into another folder, with no later epoch better (here a learning rate too small to move
    anything), the best epoch's checkpoint is carried over: --test_rows works and the printed best.pt exists."""
    train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path / 'a'), '--no_progress', '--num_epoch', '2',
                '--dim_latent', '8'])
    first = json.loads(open(tmp_path / 'a' / 'GCN_PHR' / 'metrics.jsonl').readlines()[-1])
    capsys.readouterr()
    best = train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path / 'b'), '--no_progress', '--num_epoch',
                       '3', '--PATH_weight_load', str(tmp_path / 'a' / 'GCN_PHR' / 'last.pt'), '--l_r', '1e-12',
                       '--test_rows', str(tmp_path / 'rows.npz')])
    out = capsys.readouterr().out
    path = tmp_path / 'b' / 'GCN_PHR' / 'best.pt'
    assert best['epoch'] <= 1 and path.exists() and f'checkpoint {path}' in out
    assert torch.load(path, weights_only=True)['epoch'] == best['epoch']
    rows = np.load(tmp_path / 'rows.npz')
    assert abs(float(rows['recall@10'].mean()) - best['test']['recall@10']) < 1e-6
    assert first['epoch'] == 1


@pytest.mark.parametrize('model', [['--model_name', 'no_att'], ['--model_name', 'GCN_PHR_plus', '--calibrate_counts']])
def test_a_resume_whose_best_epoch_has_no_weights_is_one_line(model, tiny_dir, tmp_path):
    """Resumed into another folder with the best epoch's best.pt gone and no epoch left to run: the run cannot report
    a checkpoint, and says so in one line, before any hook would read the missing file (GCN-PHR+'s calibration)."""
    train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path / 'a'), '--no_progress', '--num_epoch', '2',
                '--dim_latent', '8', *model])
    run = tmp_path / 'a' / model[1]
    (run / 'best.pt').unlink()
    one_line_error(lambda: train.main(['--data_path', tiny_dir, '--save_dir', str(tmp_path / 'b'), '--no_progress',
                                       '--num_epoch', '2', '--PATH_weight_load', str(run / 'last.pt')]),
                   'has no weights in this run folder', 'resume into the original folder')


def test_a_stop_in_the_first_epoch_after_a_resume_keeps_the_earlier_lines(tiny_dir, tmp_path, monkeypatch):
    """Issue 29 (4): the lines of the epochs before the checkpoint are written whole before the first resumed epoch
    starts, so a kill there (here: an exception out of that epoch) leaves them, and the next resume appends."""
    argv = ['--data_path', tiny_dir, '--model_name', 'no_att', '--save_dir', str(tmp_path), '--no_progress',
            '--dim_latent', '8', '--batch_size', '64', '--num_epoch', '2', '--patience', '5']
    train.main(argv)
    log = tmp_path / 'no_att' / 'metrics.jsonl'
    before = _metrics(log)
    assert [m['epoch'] for m in before] == [0, 1]
    resume = argv[:-4] + ['--num_epoch', '4', '--patience', '5', '--PATH_weight_load', str(log.parent / 'last.pt')]

    def killed(*a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(train, 'train_epoch', killed)
        with pytest.raises(KeyboardInterrupt):
            train.main(resume)
    assert _metrics(log) == before
    train.main(resume)
    after = _metrics(log)
    assert [m['epoch'] for m in after] == [0, 1, 2, 3] and after[:2] == before


def test_a_second_sweep_on_one_results_file_is_refused(tiny_dir, tmp_path):
    """Issue 29 (5): two tune.py on one results file would run the same runs and write the same records: the
    second stops with one clear error naming the file and the holder; --save_dir naming a file is refused too."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('tune_cli', os.path.join(ROOT, 'scripts', 'tune.py'))
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    results = tmp_path / 'r.jsonl'
    own = ['--datasets', tiny_dir, '--models', 'popularity', '--seeds', '0', '--max_epoch', '1',
           '--results', str(results), '--rows_dir', str(tmp_path / 'rows'), '--out', str(tmp_path / 'R.md')]
    holder = subprocess.Popen([sys.executable, '-c', 'import fcntl, sys, time; f = open(sys.argv[1], "a+"); '
                               'fcntl.flock(f, fcntl.LOCK_EX); f.write("pid 4343\\n"); f.flush(); print("held", '
                               'flush=True); time.sleep(60)', str(tmp_path / '.r.jsonl.lock')],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        one_line_error(lambda: cli(tune, own + ['--save_dir', str(tmp_path / 'runs')]), 'r.jsonl',
                       'another tune.py is running on it', 'pid 4343')
        assert not results.exists()
    finally:
        holder.kill()
        holder.wait()
    (tmp_path / 'afile').write_text('')
    one_line_error(lambda: cli(tune, own + ['--save_dir', str(tmp_path / 'afile')]), 'afile', 'is a file')
    assert not results.exists()
    cli(tune, own + ['--save_dir', str(tmp_path / 'runs')])   # free again: the sweep runs
    assert results.exists()


# ------------------------------------------------- nothing lost, part three: links, data folders, a run's identity

def _gcn(tiny_dir, tmp_path, *extra):
    return train.main(['--data_path', tiny_dir, '--dim_latent', '8', '--num_epoch', '1', '--no_progress',
                       '--save_dir', str(tmp_path / 'runs'), *extra])


def test_test_rows_never_go_into_a_dataset_folder_or_over_a_file(tiny_copy, tmp_path):
    test = os.path.join(tiny_copy, 'test.npy')
    before = open(test, 'rb').read()
    one_line_error(lambda: train_floor(tiny_copy, tmp_path, '--test_rows', test), '--test_rows', 'dataset folder')
    one_line_error(lambda: train_floor(tiny_copy, tmp_path, '--test_rows', test, '--overwrite'), 'dataset folder')
    assert open(test, 'rb').read() == before
    rows = tmp_path / 'rows.npz'
    rows.write_bytes(b'mine')
    one_line_error(lambda: train_floor(tiny_copy, tmp_path, '--test_rows', str(rows)), '--test_rows', '--overwrite')
    assert rows.read_bytes() == b'mine'
    train_floor(tiny_copy, tmp_path, '--test_rows', str(rows), '--overwrite')   # asked for: replaced
    assert np.load(rows)['recall@10'].shape == (len(np.load(test)),)


def test_no_write_through_a_link(tiny_dir, tmp_path):
    precious = tmp_path / 'precious.txt'
    precious.write_text('keep me')
    rows = tmp_path / 'rows.npz'
    rows.symlink_to(precious)
    one_line_error(lambda: train_floor(tiny_dir, tmp_path, '--test_rows', str(rows), '--overwrite'), 'is a link')
    run = tmp_path / 'runs' / 'user_popularity'
    run.mkdir(parents=True)
    (run / '.lock').symlink_to(precious)                       # a lock that is a link: never truncated
    one_line_error(lambda: train_floor(tiny_dir, tmp_path), '.lock', 'link')
    from phr.util import atomic
    lock = tmp_path / '.results.lock'
    lock.symlink_to(precious)
    one_line_error(lambda: atomic.hold(str(lock), lambda who: 'busy'), 'link')
    assert precious.read_text() == 'keep me'


def test_run_name_stays_inside_save_dir(tiny_dir, tmp_path):
    for name in ('../outside', str(tmp_path / 'abs')):
        one_line_error(lambda: train_floor(tiny_dir, tmp_path, '--run_name', name), '--run_name', 'inside --save_dir')
    assert not (tmp_path / 'outside').exists() and not (tmp_path / 'abs').exists()


def test_a_resume_keeps_its_protocol_and_its_checkpoint_path(tiny_dir, tmp_path):
    _gcn(tiny_dir, tmp_path)
    last = str(tmp_path / 'runs' / 'GCN_PHR' / 'last.pt')
    one_line_error(lambda: _gcn(tiny_dir, tmp_path, '--PATH_weight_load', last, '--num_epoch', '2', '--protocol',
                                'full'), '--protocol sampled', 'measured differently')
    one_line_error(lambda: _gcn(tiny_dir, tmp_path, '--PATH_weight_load', last, '--num_epoch', '2', '--select',
                                'ndcg@10'), '--select recall@10')
    other = tmp_path / 'other.pt'
    other.write_bytes(b'another run')
    one_line_error(lambda: _gcn(tiny_dir, tmp_path, '--PATH_weight_load', last, '--num_epoch', '2',
                                '--PATH_weight_save', str(other)), '--PATH_weight_save', '--overwrite')
    assert other.read_bytes() == b'another run'
    # a full-ranking run resumed without the flag stays full ranking
    _gcn(tiny_dir, tmp_path, '--protocol', 'full', '--run_name', 'f')
    best = _gcn(tiny_dir, tmp_path, '--PATH_weight_load', str(tmp_path / 'runs' / 'f' / 'last.pt'), '--num_epoch', '2')
    ckpt = torch.load(tmp_path / 'runs' / 'f' / 'last.pt', weights_only=True)
    assert ckpt['config']['protocol'] == 'full' and best['epochs_run'] == 2


def test_generate_never_writes_over_an_import_or_through_a_link(tiny_dir, tmp_path):
    import shutil
    imported = tmp_path / 'imported'
    cli(import_posts, [os.path.join(ROOT, 'tests', 'fixtures', 'twitter'), '--out', imported, '--format', 'twitter'])
    before = {n: (imported / n).read_bytes() for n in os.listdir(imported)}
    one_line_error(lambda: cli(generate, TINY_GEN + ['--out', imported, '--overwrite']), 'imported dataset')
    assert {n: (imported / n).read_bytes() for n in os.listdir(imported)} == before
    own = tmp_path / 'own'
    shutil.copytree(tiny_dir, own)
    one_line_error(lambda: cli(generate, TINY_GEN + ['--out', own]), 'already there', '--overwrite')
    (own / 'user_list.txt').unlink()
    precious = tmp_path / 'precious.txt'
    precious.write_text('keep me')
    (own / 'user_list.txt').symlink_to(precious)
    one_line_error(lambda: cli(generate, TINY_GEN + ['--out', own, '--overwrite']), 'user_list.txt is a link')
    assert precious.read_text() == 'keep me'


TINY_GEN = ['--preset', 'demo', '--scale', '0.1', '--num_neg', '50', '--seed', '7']


def test_a_stopped_imports_leftovers_are_cleaned_up(tmp_path):
    out = tmp_path / 'd'
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    pid = dead.stdout.strip()                                   # a process that has ended
    (tmp_path / f'd.importing-{pid}').mkdir()
    (tmp_path / f'd.replaced-{pid}').mkdir()
    (tmp_path / f'd.replaced-{pid}' / 'user_list.txt').write_text('the previous dataset\n')
    import_posts.clean_leftovers(str(out))
    assert not (tmp_path / f'd.importing-{pid}').exists()
    assert (out / 'user_list.txt').read_text() == 'the previous dataset\n'   # put back: out was missing
    live = tmp_path / f'd.importing-{os.getpid()}'                           # a live import's folder stays
    live.mkdir()
    import_posts.clean_leftovers(str(out))
    assert live.exists()


def test_a_checkpoint_of_nan_weights_is_refused(tiny_dir, tiny_data, tmp_path):
    from phr.training.checkpoint import CheckpointError, load_checkpoint
    _gcn(tiny_dir, tmp_path)
    path = tmp_path / 'runs' / 'GCN_PHR' / 'best.pt'
    ckpt = torch.load(path, weights_only=True)
    ckpt['model']['user_emb.weight'][0, 0] = float('nan')
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match='NaN or inf.*user_emb.weight'):
        load_checkpoint(str(path), tiny_data)


def test_recommend_checks_features_before_anything(tiny_dir, tmp_path):
    one_line_error(lambda: cli(recommend, ['--checkpoint', 'x.pt', '--data_path', tiny_dir, '--author', 'nobody',
                                           '--features', str(tmp_path / 'missing.npy')]), '--features', 'no such file')


def test_a_report_of_the_other_protocols_records_is_refused(tmp_path):
    from phr.sweep import command as tune
    results = tmp_path / 'r.jsonl'
    results.write_text(json.dumps({'protocol': 'full', 'dataset': 'd', 'model': 'kNN', 'phase': 'seed', 'seed': 0,
                                   'config': {}, 'status': 'ok'}) + '\n')
    one_line_error(lambda: cli(tune, ['--report', '--results', results, '--rows_dir', tmp_path, '--out',
                                      tmp_path / 'R.md', '--datasets', 'd', '--models', 'kNN']),
                   'full runs only', '--protocol full')
    assert not (tmp_path / 'R.md').exists()
    # the committed full-ranking results under the default (sampled) protocol: the flag missing is named
    one_line_error(lambda: cli(tune, ['--report', '--results', tune.COMMITTED['full']['results'], '--rows_dir',
                                      tune.COMMITTED['full']['rows_dir'], '--out', tmp_path / 'R.md']),
                   'committed full-protocol', 'give --protocol full')
    assert not (tmp_path / 'R.md').exists()


def test_hashtags_keep_their_zero_width_joiners_and_lose_invisible_spaces(tmp_path):
    posts = [{'post_id': str(i), 'author': 'a', 'text': t} for i, t in
             enumerate(['سلام #می\u200cخواهم', 'x #tag', 'y #ta\u200bg', 'z #other'])]
    raw = [import_posts._generic(p, 'test') for p in posts]
    assert raw[0]['hashtags'] == ['می\u200cخواهم']          # not cut at the joiner
    kept, _ = import_posts.clean_posts(raw, min_posts=1)
    assert [p['hashtags'] for p in kept][1:3] == [['tag'], ['tag']]   # one hashtag, not two


def test_posts_file_is_part_of_the_dataset(tmp_path):
    """posts.jsonl is read by TagBlend and TagRank: a reordered file is refused by name, and it is in the fingerprint
    (a checkpoint or sweep record of the old file no longer matches; one of before it was covered still does)."""
    from data_load import DataError, fingerprint, load_dataset, matches
    d = tmp_path / 'd'
    cli(import_posts, [os.path.join(ROOT, 'tests', 'fixtures', 'twitter'), '--out', d, '--format', 'twitter'])
    legacy, before = fingerprint(str(d), legacy=True), fingerprint(str(d))
    lines = (d / 'posts.jsonl').read_text(encoding='utf-8').splitlines(keepends=True)
    (d / 'posts.jsonl').write_text(''.join([lines[1], lines[0]] + lines[2:]), encoding='utf-8')
    with pytest.raises(DataError, match='reordered or edited'):
        load_dataset(str(d), verbose=False).texts
    assert fingerprint(str(d)) != before and matches(legacy, str(d)) and not matches(before, str(d))


def test_a_stale_history_file_is_written_again(tiny_copy, tmp_path):
    from phr.sweep import runner
    out = str(tmp_path / 'history.npz')
    np.savez(out, seen=np.zeros(3), fingerprint=np.array('another dataset'))
    from data_load import fingerprints
    runner.write_history(tiny_copy, out, fingerprints(tiny_copy))
    got = np.load(out)
    assert len(got['seen']) != 3 and str(got['fingerprint']) != 'another dataset'


def test_damaged_sweep_records_are_skipped_by_line(tmp_path, capsys):
    from phr.sweep import records
    good = {'protocol': 'sampled', 'dataset': 'd', 'model': 'kNN', 'phase': 'seed', 'seed': 0, 'config': {},
            'status': 'ok', 'index': 0}
    path = tmp_path / 'r.jsonl'
    path.write_text('\n'.join(json.dumps(r) for r in (good, dict(good, config=[1, 2]), dict(good, index='x'))) + '\n')
    assert records.load(str(path)) == [good]
    assert 'r.jsonl:2' in capsys.readouterr().out


def test_sweep_inputs_that_cannot_work_are_one_line(tmp_path):
    from phr.sweep import command as tune
    one_line_error(lambda: cli(tune, ['--datasets', 'nosuchset', '--models', 'kNN', '--results', tmp_path / 'r.jsonl',
                                      '--rows_dir', tmp_path / 'rows', '--out', tmp_path / 'R.md']),
                   'nosuchset', 'not a dataset of the sweep')
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    one_line_error(lambda: cli(tune, ['--datasets', 'demo=0.1', '--models', 'kNN', '--results', blocker / 'r.jsonl',
                                      '--rows_dir', tmp_path / 'rows', '--out', tmp_path / 'R.md']),
                   '--results', 'cannot write there', f'{blocker} is a file, not a folder')


def test_bench_flags_are_checked(capsys):
    from phr.experiments import bench
    for argv in (['--device', 'mps'], ['--device', 'cuda:7'] if not torch.cuda.is_available() else ['--device', 'x'],
                 ['--batch_size', '0'], ['--eval_batch', '0'], ['--dim_latent', '0']):
        with pytest.raises(SystemExit):
            cli(bench, argv)
        assert 'error:' in capsys.readouterr().err


def test_a_negative_dimension_in_model_args_is_one_clear_error(tiny_dir, tiny_data, tmp_path):
    from phr.training.checkpoint import CheckpointError, load_checkpoint
    _gcn(tiny_dir, tmp_path)
    path = tmp_path / 'runs' / 'GCN_PHR' / 'best.pt'
    ckpt = torch.load(path, weights_only=True)
    ckpt['model_args']['dim'] = -8
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match='dim must be positive'):
        load_checkpoint(str(path), tiny_data)


def test_pickled_npz_files_are_refused_by_name(tmp_path):
    from data_load import DataError, load_npz
    bad = tmp_path / 'rows.npz'
    np.savez(bad, ids=np.array([{'a': 1}], dtype=object), features=np.zeros((1, 2)))
    with pytest.raises(DataError, match='rows.npz: holds pickled object arrays'):
        load_npz(str(bad))
    with pytest.raises(DataError, match='rows.npz: holds pickled object arrays'):
        import_posts.read_feature_file(str(bad), ['a'], 'visual')


def test_a_metrics_log_that_is_a_link_is_replaced_not_followed(tiny_dir, tmp_path):
    precious = tmp_path / 'precious.txt'
    precious.write_text('keep me')
    run = tmp_path / 'runs' / 'GCN_PHR'
    run.mkdir(parents=True)
    (run / 'metrics.jsonl').symlink_to(precious)
    _gcn(tiny_dir, tmp_path, '--overwrite')
    assert precious.read_text() == 'keep me' and not (run / 'metrics.jsonl').is_symlink()


def test_absurd_knob_values_are_refused(tiny_dir, tmp_path, capsys):
    one_line_error(lambda: train.main(['--data_path', tiny_dir, '--model_name', 'kNN', '--power', '1e308']),
                   '--power', 'at most 16')
    from phr.experiments import diagnose, full_rank
    for module, argv in ((full_rank, ['--data_path', tiny_dir, '--scales', 'inf']),
                         (diagnose, ['x.pt', '--data_path', tiny_dir, '--count_scales', 'nan'])):
        with pytest.raises(SystemExit):
            cli(module, argv)
        assert 'finite number' in capsys.readouterr().err


def test_a_hand_edited_result_that_disagrees_with_its_rows_is_refused(tmp_path):
    """The tables read a run's record and its per-row file: when the two disagree (one was edited), the report says
    which, instead of printing a table of the edited numbers beside intervals of the real ones."""
    from phr.sweep import report
    from phr.sweep.plan import Plan
    rows = tmp_path / 'rows.npz'
    np.savez(rows, **{'recall@10': np.full(4, 0.5, np.float32), 'ndcg@10': np.full(4, 0.25, np.float32)})
    rec = {'protocol': 'sampled', 'dataset': 'd', 'model': 'kNN', 'phase': 'seed', 'seed': 0, 'index': 0,
           'config': {}, 'status': 'ok', 'rows': str(rows), 'test': {'recall@10': 0.5, 'ndcg@10': 0.25}}
    plan = Plan(datasets=['d'], models=['kNN'], pinned={})
    assert report.seed_rows(plan, [rec], 'd', 'kNN', [0], records=[rec])['recall@10'].shape == (1, 4)
    edited = dict(rec, test={'recall@10': 0.9, 'ndcg@10': 0.25})
    one_line_error(lambda: report.seed_rows(plan, [edited], 'd', 'kNN', [0], records=[edited]),
                   'rows.npz', 'disagrees with its record', '0.9000')


def test_sweeping_a_pickled_dataset_is_one_line(tmp_path):
    from phr.sweep import command as tune
    data = tmp_path / 'pickled'
    cli(generate, ['--preset', 'demo', '--scale', '0.1', '--num_neg', '50', '--seed', '7', '--out', data, '--legacy'])
    one_line_error(lambda: cli(tune, ['--datasets', data, '--models', 'popularity', '--results', tmp_path / 'r.jsonl',
                                      '--rows_dir', tmp_path / 'rows', '--out', tmp_path / 'R.md',
                                      '--save_dir', tmp_path / 'runs']), 'pickled', '--allow_pickle')


def test_an_import_that_cannot_write_is_one_line_and_keeps_the_old_dataset(tmp_path, monkeypatch):
    src = os.path.join(ROOT, 'tests', 'fixtures', 'twitter')
    out = tmp_path / 'd'
    cli(import_posts, [src, '--out', out, '--format', 'twitter'])
    before = sorted(os.listdir(out))

    def full_disk(*args, **kwargs):
        raise OSError(28, 'No space left on device', str(out) + '.importing-0/train.npy')
    monkeypatch.setattr(import_posts, '_import_into', full_disk)
    one_line_error(lambda: cli(import_posts, [src, '--out', out, '--format', 'twitter', '--overwrite']),
                   'No space left on device', 'nothing was replaced')
    assert sorted(os.listdir(out)) == before


def test_metrics_that_cannot_tell_models_apart_get_a_note(tmp_path, capsys):
    """Rows that rank no more than K candidates make Recall@K 1 whatever the model: said, not printed as a result."""
    from conftest import make_tiny
    few = make_tiny(tmp_path / 'few', '--num_neg', '3', '--hashtags_per_topic', '1')
    train_floor(few, tmp_path, '--overwrite')
    out = capsys.readouterr().out
    assert 'note: 89 of the 89 validation and test rows' in out and 'these metrics tell nothing here' in out, out
    assert 'Recall@10 is 1 on them' in out
    train_floor(few, tmp_path, '--overwrite', '--topk', '1', '--select', 'recall@1')   # top-1 of 4 or more candidates: no note
    assert 'note:' not in capsys.readouterr().out
    train_floor(few, tmp_path, '--overwrite', '--topk', '200', '--select', 'recall@200')   # more than its 110 tags
    out = capsys.readouterr().out
    assert 'has 110 hashtag(s): every one is in every top-200' in out and 'tell nothing here' in out, out
