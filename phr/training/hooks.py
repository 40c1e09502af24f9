"""Models' own training behaviour, kept out of the loop (as RecBole picks a trainer by model type): a model names
its hook (``Recommender.hook``) and ``train.py`` calls, for every model alike,

    hook.epoch_metrics(model, splits, ks, batch_size, shard, by) -> ({split: metrics}, {what to log with them})
    hook.finishes(model)                                       -> whether finish_run has anything to do
    hook.finish_run(model, splits, ks, batch_size, by, best)    -> None, or a ``Finish`` for the best checkpoint

The plain ``Hook`` evaluates and does nothing after training. ``CountCalibration`` is GCN-PHR+'s: its learned count
weight scaled on validation (``--calibrate_counts``), at every epoch too (``--select_calibrated``). What a hook
finishes with reaches the run's record by one channel: ``Finish.fields`` go into the checkpoint's ``best`` and the
run folder's ``finish.json``, and the sweep copies the model's declared ``record_fields`` from there.
"""
import math
from dataclasses import dataclass, field

import torch

from evaluation import evaluate_splits, evaluate_variants, selection_key


@dataclass
class Finish:
    """What a hook did to the best checkpoint's model: its validation and test metrics after the change, the fields
    the run's record keeps (``fields``), what else the run folder's finish.json keeps (``details``)."""
    val: dict
    test: dict
    fields: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class Hook:
    """Every model's training behaviour unless it names another: plain evaluation, nothing after training."""

    def epoch_metrics(self, model, splits, ks, batch_size=None, shard=None, by='recall@10'):
        return evaluate_splits(model, splits, ks, batch_size, shard), {}

    def finishes(self, model):
        """Whether ``finish_run`` may change the best checkpoint: train.py loads that checkpoint only then."""
        return False

    def finish_run(self, model, splits, ks, batch_size=None, by='recall@10', best=None):
        return None


# ---- GCN-PHR+'s count weight, scaled on validation only

def count_weight_variants(model, weights):
    """``variants`` for ``evaluation.evaluate_variants``: GCN_PHR_plus's score at each count weight of ``weights``,
    the rest of the score computed once and each weight's count term added to it (``GCNPHRPlus.score_parts``)."""
    def variants(enc, users, posts, hashtags):
        s, log_count = model.score_parts(enc, users, posts, hashtags)
        return [s + wf * log_count for wf in weights]
    return variants


def best_scale(table, by='recall@10'):
    """The (factor, metrics) of ``table`` that count-weight calibration keeps: best ``selection_key``, then the
    factor nearest 1 (w moves only where validation says so), then the smaller one."""
    return max(table, key=lambda t: (selection_key(t[1], by), -abs(math.log(t[0])), -t[0]))


def calibrate_count_weight(model, val, ks, batch_size=None, scales=None, by='recall@10', shard=None, enc=None):
    """Scale GCN_PHR_plus's learned count weight w by the factor of ``scales`` (default ``model.count_scales``) whose
    validation metrics are best (``selection_key`` of ``by``: Recall@10, then NDCG@10, unless train.py --select says
    otherwise; on an exact tie the factor nearest 1, so w
    moves only where validation says so) and leave it scaled in ``model``.
    w is one scalar under Adam, which moves it about one learning rate per step, so from where it starts it moves
    little in the few hundred steps a run has; its scale is fitted here afterwards, on validation only, as the
    epoch is. Returns (factor, w before, [(factor, val metrics), ...]); (1.0, None, []) without a count term.
    ``shard``: rows shared out over data-parallel processes (``evaluate``); ``enc``: a propagation to reuse."""
    w = getattr(model, 'count_weight', None)
    if w is None:
        return 1.0, None, []
    scales = model.count_scales if scales is None else scales
    model.eval()
    with torch.no_grad():
        if enc is None:
            enc = model.encode()            # the count term is added after propagation: one encode serves all
        w0 = w.detach().clone()
        variants = count_weight_variants(model, [w0 * f for f in scales])
        table = list(zip(map(float, scales), evaluate_variants(model, val, variants, len(scales), ks, batch_size,
                                                               enc=enc, shard=shard)))
        best = best_scale(table, by)
        w.copy_(w0 * best[0])
    return best[0], float(w0), table


class CountCalibration(Hook):
    """GCN-PHR+'s hook (``--calibrate_counts``, ``--select_calibrated``): the factor of its learned count weight w best
    on validation, chosen after training on the best checkpoint and, with ``select_calibrated``, at every epoch."""

    def epoch_metrics(self, model, splits, ks, batch_size=None, shard=None, by='recall@10'):
        """An epoch's {split: metrics} and what to log with them. With ``select_calibrated`` (and a count term) the
        count-weight factor is fitted on validation (``calibrate_count_weight``), validation and test are measured
        at it, then w goes back to its learned value: training never sees the factor, only which epoch is selected
        and when patience stops the run do."""
        if not (model.select_calibrated and model.counts):
            return super().epoch_metrics(model, splits, ks, batch_size, shard, by)
        model.eval()
        with torch.no_grad():
            enc = model.encode()
            factor, w0, table = calibrate_count_weight(model, splits['val'], ks, batch_size, by=by, shard=shard,
                                                       enc=enc)
            m = {'val': dict(table)[factor], **evaluate_splits(model, {n: s for n, s in splits.items() if n != 'val'},
                                                               ks, batch_size, shard, enc)}
            model.count_weight.copy_(w0)
        return m, {'count_scale': factor}

    def finishes(self, model):
        return bool(model.calibrate_counts)

    def finish_run(self, model, splits, ks, batch_size=None, by='recall@10', best=None):
        """``calibrate_counts`` after training, on the best checkpoint's model: its count weight (the weight as
        trained, ``best['count_weight_trained']``, when the checkpoint was calibrated before) scaled by the factor
        best on validation. None when there is nothing to do."""
        if not model.calibrate_counts:
            return None
        if not model.counts:
            print('--calibrate_counts: this model has no count term (--no-counts): nothing to calibrate')
            return None
        trained = (best or {}).get('count_weight_trained')
        if trained is not None:
            with torch.no_grad():
                model.count_weight.fill_(trained)
        factor, w0, table = calibrate_count_weight(model, splits['val'], ks, batch_size, by=by)
        m = {'val': dict(table)[factor], **evaluate_splits(model, {'test': splits['test']}, ks, batch_size)}
        w = float(model.count_weight.detach())
        print(f'count weight w = {w0:.3f} as trained; on validation ({by}): '
              + ', '.join(f'x{f:g} {t[by]:.4f}' for f, t in table)
              + f'; kept x{factor:g} (w = {w:.3f})')
        return Finish(val=m['val'], test=m['test'],
                      fields={'count_weight_trained': w0, 'count_scale': factor, 'count_weight': w},
                      details={'val_by_scale': [{'scale': f, 'val': t} for f, t in table]})


HOOKS = {'count_calibration': CountCalibration}


def hook_for(model):
    """The training hook of ``model``: the one its class names (``Recommender.hook``), else the plain one."""
    name = type(model).hook
    if name is None:
        return Hook()
    if name not in HOOKS:
        raise ValueError(f'{type(model).__name__} names the training hook {name!r}; known: {tuple(HOOKS)}')
    return HOOKS[name]()
