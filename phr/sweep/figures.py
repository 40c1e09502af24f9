"""The figures of docs/results.md, drawn from the results records alone (matplotlib, no screen needed).

    table_figure   one bar per model: test Recall@10, mean over seeds, with the seed spread (min to max) as a bar
                   and each seed as a dot; the dashed line is the user-frequency floor
    curves_figure  validation Recall@10 per epoch of each trained model's selected runs (one line per seed)
"""
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from phr.models.registry import MODELS  # noqa: E402

FLOOR = 'user_popularity'


def _label(model):
    return MODELS[model].label.split(' (')[0] if model in MODELS else model


def table_figure(path, title, rows):
    """``rows``: [(model, [test R@10 of each seed])] in the table's order; writes a PNG at ``path``."""
    rows = [(m, v) for m, v in rows if v]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.36 * len(rows) + 1.2), dpi=110)
    for i, (model, values) in enumerate(rows):
        mean = sum(values) / len(values)
        colour = '#c44e52' if model.startswith('GCN_PHR_') else '#8c8c8c' if MODELS.get(model) and \
            not MODELS[model].trainable else '#4c72b0'
        ax.barh(i, mean, color=colour, height=0.65)
        ax.plot([min(values), max(values)], [i, i], color='black', lw=1.2)
        ax.scatter(values, [i] * len(values), color='black', s=6, zorder=3)
        ax.text(mean + 0.004, i, f'{mean:.3f}', va='center', fontsize=7)
    floor = dict(rows).get(FLOOR)
    if floor:
        ax.axvline(sum(floor) / len(floor), color='#555555', ls='--', lw=0.8)
    ax.set_yticks(range(len(rows)), [_label(m) for m, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('test Recall@10 (bar: mean over seeds; line and dots: the seeds)', fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis='x', labelsize=7)
    fig.tight_layout()
    _save(fig, path)
    return path


def curves_figure(path, title, curves):
    """``curves``: [(model, [[validation R@10 per epoch] of each seed])]; writes a PNG at ``path``."""
    curves = [(m, c) for m, c in curves if c and any(len(x) > 1 for x in c)]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    cmap = plt.get_cmap('tab20')
    for i, (model, seeds) in enumerate(curves):
        for j, curve in enumerate(seeds):
            ax.plot(range(len(curve)), curve, color=cmap(i % 20), lw=1.0, alpha=0.9,
                    label=_label(model) if j == 0 else None)
    ax.set_xlabel('epoch', fontsize=8)
    ax.set_ylabel('validation Recall@10', fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=2, loc='lower right')
    fig.tight_layout()
    _save(fig, path)
    return path


def _save(fig, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp.png'
    fig.savefig(tmp, metadata={'Software': None})   # no version stamp: the same records draw the same file
    plt.close(fig)
    os.replace(tmp, path)
