"""The sweep's datasets, declared in one list: each is its name (what ``scripts/tune.py --datasets`` takes), its
title in tables, the command that builds its folder under ``Data/`` from the project's own tools, the input it reads
from outside the repository (if any), and the training settings every model gets on it. Adding a dataset to the
sweep is one ``Dataset`` line here (tests/test_registry.py adds one).

Beside the declared ones the sweep takes any generated preset at a scale (``PRESET=SCALE``, e.g. ``demo=0.1``:
``scripts/generate.py --preset PRESET --scale SCALE``) and any folder that already holds a dataset.
"""
import os
from dataclasses import dataclass, field

from phr import ROOT
from phr.data.synthetic import PRESETS

SHARED = os.path.join(ROOT, '..', 'shared', 'data')   # the project's real data, read in place, never copied


@dataclass(frozen=True)
class Dataset:
    name: str                                     # as --datasets names it
    title: str                                    # its name in tables and figures
    build: tuple                                  # the command that writes it: a script of scripts/ and its flags
    folder: str                                   # under Data/
    source: str = None                            # input outside the repository that ``build`` reads, if any
    settings: dict = field(default_factory=dict)  # training settings of every model on it (batch_size, ...)

    @property
    def path(self):
        return os.path.join(ROOT, 'Data', self.folder)


DATASETS = {}


def declare(name, title, build, folder=None, source=None, **settings):
    """Add a dataset to the sweep (``build``: the ``scripts/`` command and its flags; ``--out`` is added)."""
    DATASETS[name] = Dataset(name, title, tuple(build), folder or name, source, settings)
    return DATASETS[name]


HOWYOUTAG = os.path.join(SHARED, 'howyoutag')

# ---- the datasets: one line each
declare('howyoutag', "#HowYouTagTweets, authors' split", ['import_posts.py', HOWYOUTAG], source=HOWYOUTAG)
declare('howyoutag_makers', "#HowYouTagTweets, makers' split", ['import_posts.py', HOWYOUTAG, '--split', 'makers'],
        source=HOWYOUTAG)
declare('rtweet', 'rtweet (60 test posts: a smoke test)', ['real_tweets.py', '--import_only'],
        batch_size=64, max_epoch=60, patience=20)     # 123 training posts, 6 val posts
declare('yfcc100m=0.02', 'yfcc100m x0.02 (generated)', ['generate.py', '--preset', 'yfcc100m', '--scale', '0.02'],
        folder='yfcc100m_0.02')
declare('instagram=0.04', 'instagram x0.04 (generated)', ['generate.py', '--preset', 'instagram', '--scale', '0.04'],
        folder='instagram_0.04')
declare('yfcc100m=0.05', 'yfcc100m x0.05 (generated)', ['generate.py', '--preset', 'yfcc100m', '--scale', '0.05'],
        folder='yfcc100m_0.05')
declare('instagram=0.1', 'instagram x0.1 (generated)', ['generate.py', '--preset', 'instagram', '--scale', '0.1'],
        folder='instagram_0.1')


def get(spec):
    """The ``Dataset`` of a name of the list, or of a generated preset at a scale (``PRESET=SCALE``); None for a
    folder given by its path."""
    if spec in DATASETS:
        return DATASETS[spec]
    if os.path.exists(os.path.join(spec, 'test.npy')):
        return None
    name, _, scale = spec.partition('=')
    if name not in PRESETS:
        raise SystemExit(f'error: dataset {spec!r}: not a dataset of the sweep ({", ".join(DATASETS)}), not a generated '
                         f'preset ({", ".join(sorted(PRESETS))}, as PRESET or PRESET=SCALE) and not a dataset folder')
    try:
        folder = name + ('' if scale in ('', '1') else f'_{float(scale):g}')
    except ValueError:
        raise SystemExit(f'error: dataset {spec!r}: the scale after = must be a number') from None
    return Dataset(spec, spec, ('generate.py', '--preset', name) + (('--scale', scale) if scale else ()), folder)


def title(spec):
    d = DATASETS.get(spec)
    return d.title if d else spec


def settings(spec):
    d = DATASETS.get(spec)
    return d.settings if d else {}
