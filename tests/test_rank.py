"""TagRank: candidates from the classic evidence, a LambdaMART ranker cross-fitted on validation folds. Validation
posts are scored out-of-fold (never by a ranker that saw them), test posts by the fold rankers' mean; test labels are
never read; another model's checkpoint can be one more feature."""
import numpy as np
import pytest
import torch

from phr.core.base import Posts
from phr.training.checkpoint import build_model


@pytest.fixture(scope='module')
def ranked(tiny_data):
    return build_model('TagRank', tiny_data, candidates=20, min_leaf=5)


def test_validation_posts_are_scored_out_of_fold_and_test_posts_by_the_mean(ranked, tiny_data):
    m, v, t = ranked, tiny_data.val, tiny_data.test
    assert len(m.rankers) == 4 and 0 < m.recall_of_candidates <= 1
    with torch.no_grad():
        r, c, x, _ = m._features({}, v.users, Posts(ids=v.videos))
        fold = torch.randperm(len(v), generator=torch.Generator().manual_seed(0)) % 4
        want = np.zeros(len(x))
        for f, b in enumerate(m.rankers):
            mine = (fold[r] == f).numpy()
            want[mine] = b.predict(x[mine], num_iteration=b.best_iteration or None)
        assert np.allclose(m._out_of_fold(v.videos, r, c).numpy(), want, atol=1e-6)
        r, c, x, _ = m._features({}, t.users, Posts(ids=t.videos))
        s = m.score_all({}, t.users, Posts(ids=t.videos))
        mean = np.mean([b.predict(x, num_iteration=b.best_iteration or None) for b in m.rankers], axis=0)
    order = lambda a: np.argsort(-a, kind='stable')  # noqa: E731
    for row in range(3):   # the candidates of a test post come in the order of the rankers' mean, above the rest
        mine = (r == row).numpy()
        got = s[row, c[mine]].numpy()
        assert np.array_equal(order(got), order(mean[mine]))
        assert got.min() > s[row][~torch.isin(torch.arange(tiny_data.num_hashtag), c[mine])].max()


def test_candidates_hold_the_users_own_hashtags_and_the_blends_best(ranked, tiny_data):
    t = tiny_data.test
    with torch.no_grad():
        terms = ranked.blend.terms(t.users, Posts(ids=t.videos))
        blend = sum(ranked.blend.mix[k] * x for k, x in terms.items())
        mask = ranked._candidates(terms, blend)
    assert bool(mask[terms['counts'] > 0].all())
    top = torch.topk(blend, 20, dim=1).indices
    assert bool(mask.gather(1, top).all())


def test_test_labels_are_never_read(tiny_data, monkeypatch):
    from phr.models.rank import TagRank
    seen = []
    orig = TagRank._labels
    monkeypatch.setattr(TagRank, '_labels', lambda self, videos, r, c: seen.append(videos.clone()) or
                        orig(self, videos, r, c))
    m = build_model('TagRank', tiny_data, candidates=20, min_leaf=5)
    with torch.no_grad():
        m.score_all({}, tiny_data.test.users, Posts(ids=tiny_data.test.videos))
    assert set(torch.cat(seen).tolist()) == set(tiny_data.val.videos.tolist())


def test_another_models_score_is_a_feature(tiny_dir, tiny_data, tmp_path):
    import train
    train.main(['--data_path', tiny_dir, '--model_name', 'ConTagNet', '--dim_latent', '8', '--num_epoch', '2',
                '--save_dir', str(tmp_path), '--no_progress'])
    ckpt = str(tmp_path / 'ConTagNet' / 'best.pt')
    m = build_model('TagRank', tiny_data, candidates=20, min_leaf=5, score_checkpoint=ckpt)
    assert m.feature_names[-2:] == ['model score', 'model rank'] and m.other is not None
    from phr.models.registry import build_model as bare
    with pytest.raises(ValueError, match='was not built'):
        bare('TagRank', tiny_data, candidates=20, score_checkpoint=ckpt)


def test_too_few_validation_posts_rank_by_the_blend(tiny_data, capsys):
    """A smoke-test dataset (rtweet has 6 validation posts) cannot fit a ranker: TagRank says so and ranks by its
    blend, instead of a ranker fitted on a handful of posts."""
    import dataclasses
    few = dataclasses.replace(tiny_data, val=tiny_data.val.__class__(**{
        f.name: getattr(tiny_data.val, f.name)[:6] if torch.is_tensor(getattr(tiny_data.val, f.name))
        else getattr(tiny_data.val, f.name) for f in dataclasses.fields(tiny_data.val)}))
    m = build_model('TagRank', few, candidates=20)
    assert not m.rankers and 'too few to fit a ranker' in capsys.readouterr().out
    t = tiny_data.test
    with torch.no_grad():
        terms = m.blend.terms(t.users, Posts(ids=t.videos))
        assert torch.equal(m.score_all({}, t.users, Posts(ids=t.videos)),
                           sum(m.blend.mix[k] * x for k, x in terms.items()))
