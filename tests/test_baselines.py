import pytest
import torch

from phr.models.baselines import FeatureModel, user_history
from phr.models.registry import MODELS, build_model
from evaluation import evaluate
from conftest import assert_trained_and_kept
from test_model import train_steps


BASELINE_NAMES = [n for n, spec in MODELS.items() if issubclass(spec.cls, FeatureModel)]


@pytest.mark.parametrize('name', BASELINE_NAMES)
def test_baseline_learns_the_planted_structure(tiny_data, name):
    torch.manual_seed(0)
    model = build_model(name, tiny_data, dim=16)
    losses = train_steps(model, tiny_data, steps=40, lr=0.01)
    assert losses[-1] < 0.7 * losses[0], losses
    m = evaluate(model, tiny_data.val, ks=(10,))
    # a constant scorer gets 0 (ties go against positives); chance is about 10 / 53 = 0.19 here
    assert m['recall@10'] > 0.3, m
    assert set(model.state_dict()) == {k for k, _ in model.named_parameters()}


def test_floors_beat_chance_and_user_floor_is_personal(tiny_data):
    pop = evaluate(build_model('popularity', tiny_data), tiny_data.val, ks=(10,))
    own = evaluate(build_model('user_popularity', tiny_data), tiny_data.val, ks=(10,))
    assert own['recall@10'] > pop['recall@10'] > 0.19


def test_native_losses_run(tiny_dir, tiny_data, tmp_path):
    import train
    for loss, model in (('softmax', 'USHM'), ('bce', 'ConTagNet')):
        best = train.main(['--data_path', tiny_dir, '--model_name', model, '--loss', loss, '--num_epoch', '2',
                           '--save_dir', str(tmp_path), '--no_progress', '--l_r', '0.01'])
        assert_trained_and_kept(best, tmp_path / model, tiny_data)


def test_user_history_is_top_training_hashtags(tiny_data):
    hist = user_history(tiny_data, 5)
    g = tiny_data.graph
    H = tiny_data.num_hashtag
    for u in range(tiny_data.num_user):
        counts = {h: c for uu, h, c in zip(g.pair_user.tolist(), g.pair_hashtag.tolist(), g.pair_count.tolist())
                  if uu == u}
        got = [h for h in hist[u].tolist() if h != H]
        assert len(got) == min(5, len(counts))
        # the history holds hashtags with the highest counts (ties in any order)
        assert min(counts[h] for h in got) >= sorted(counts.values(), reverse=True)[len(got) - 1]


def test_lookup_rows_of_full_ranking_match_binary_search():
    # under full ranking (every hashtag, ``lookup_rows``) the values come from one run of the sorted keys per row,
    # scattered; for candidates (``lookup_pairs``), one binary search per pair: both give the same table, zeros where a key is absent
    from phr.core.sparse import lookup_pairs, lookup_rows, sorted_lookup
    g = torch.Generator().manual_seed(0)
    H, n = 37, 9
    keys = torch.unique(torch.randint(0, n * H, (120,), generator=g))
    values = torch.rand(len(keys), generator=g)
    ids = torch.tensor([3, 0, 8, 3, 5, 1, 7, 2, 6, 4])
    every = torch.arange(H).expand(len(ids), H)
    want = sorted_lookup(keys, values, ids.unsqueeze(1) * H + every)
    assert torch.equal(lookup_rows(keys, values, ids, H), want)
    assert torch.equal(lookup_pairs(keys, values, ids, every, H), want)
    some = torch.randint(0, H, (len(ids), 5), generator=g)
    assert torch.equal(lookup_pairs(keys, values, ids, some, H), sorted_lookup(keys, values, ids.unsqueeze(1) * H + some))
    assert (want == 0).any() and (want > 0).any()
