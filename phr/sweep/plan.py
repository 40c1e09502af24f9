"""What a sweep runs: the datasets, each model's configurations, and the jobs of each phase.

Protocol (as RecBole's ``run_hyper.py``: one command, any model, one declared search space):
  1. **search**: every trainable model gets the same number of configurations (``configs``, 8), drawn from its own
     ``search`` (declared beside the model: ``registry.search_space``) by one seeded draw without replacement. Each
     trains with seed 0 and early stopping; the selected epoch is the best on validation.
  2. **select**: the configuration of best validation Recall@10 (ties: NDCG@10, then the first drawn). Test
     metrics are never read.
  3. **seeds**: that configuration with seeds 0, 1, 2 (seed 0 is the search run); then each of the model's
     ``ablations`` switched off, same seeds. A model without training (kNN) has no randomness: one seed run.
The popularity floors have no knobs and no randomness: one run each.

The committed plan's configurations are data (``results/plan.json``): they were drawn once, and a model whose
declared space still equals the one stored there keeps them, so the committed runs stay the plan. A model that is
not there, or whose space changed, draws anew.
"""
import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field

from phr.models.registry import MODELS, search_space
from phr.sweep import datasets
from phr.sweep.records import config_key, search_records, selected
from phr import ROOT

PINNED = os.path.join(ROOT, 'results', 'plan.json')

# the committed sampled plan (RESULTS.md says what it cost, from the records)
DEFAULTS = dict(datasets=['yfcc100m=0.02', 'rtweet', 'howyoutag', 'instagram=0.04', 'howyoutag_makers',
                          'yfcc100m=0.05', 'instagram=0.1'],
                models=['GCN_PHR', 'no_att', 'var1', 'Net', 'UTM', 'ConTagNet', 'CSMN', 'USHM', 'GCN_PHR_plus',
                        'user_popularity', 'popularity', 'kNN', 'kNN_content', 'TagMix', 'TagBlend', 'TagRank'],
                configs=8, max_epoch=20, patience=3, batch_size=1024, seeds=[0, 1, 2])

# the committed full-ranking plan (SPEC §4): the real datasets, every model and kNN, selection on full-ranking
# validation; the generated presets' vocabularies (at most 891 hashtags at their table scales) are smaller than the
# 1,000 sampled negatives, so there the two protocols coincide and the sampled tables stand
FULL_DEFAULTS = dict(DEFAULTS, datasets=['howyoutag', 'howyoutag_makers', 'rtweet'],
                     models=['kNN', 'kNN_content', 'user_popularity', 'popularity', 'TagBlend', 'TagRank', 'TagMix',
                             'ConTagNet', 'USHM', 'GCN_PHR', 'GCN_PHR_plus', 'UTM', 'no_att', 'CSMN', 'var1', 'Net'])

# the model every row of a table is compared with (the paper's), and the models each protocol's tables compare
# against every row (the first is the protocol's headline extension)
REFERENCE = 'GCN_PHR'
COMPARE = {'sampled': ('GCN_PHR_plus', 'TagMix', 'TagBlend', 'TagRank'), 'full': ('TagRank', 'TagBlend', 'TagMix')}


def draw(space, n, seed, name):
    """``n`` configurations of ``space`` (flag -> values) by one seeded draw without replacement (all of them if
    fewer). A configuration that decays the embeddings without any weight decay is the same run as one that does
    not, so it is not drawn."""
    keys = sorted(space)
    every = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    every = [c for c in every if not (c.get('decay_embeddings') and c.get('weight_decay') == 0)]
    return every if len(every) <= n else random.Random(f'{seed}:{name}').sample(every, n)


def load_pinned(path=PINNED):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)['models']


@dataclass
class Plan:
    """One invocation's plan: datasets, models, budget, seeds, and the fixed settings ``--fixed`` adds to a model."""
    datasets: list
    models: list
    configs: int = 8
    max_epoch: int = 20
    patience: int = 3
    batch_size: int = 1024
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    fixed: dict = field(default_factory=dict)      # model -> {flag: value}, joined to every configuration of it
    ablations: bool = True
    protocol: str = 'sampled'                      # train.py --protocol of every run
    pinned: dict = field(default_factory=load_pinned)

    def __post_init__(self):
        self._configs = {}

    def trainable(self, model):
        return model in MODELS and MODELS[model].trainable

    def searched(self, model):
        """Whether the model has knobs to search (every trained model, and kNN); the floors have none."""
        return model in MODELS and bool(search_space(model))

    def configurations(self, model):
        """The model's planned configurations (train.py flags): pinned or drawn, then its ``fixed`` settings."""
        if model not in self._configs:
            space = search_space(model)
            pin = self.pinned.get(model)
            if pin and pin['space'] == json.loads(json.dumps(space)) and len(pin['configs']) == self.configs:
                drawn = [dict(c) for c in pin['configs']]
            else:
                drawn = draw(space, self.configs, 0, model)
            self._configs[model] = [dict(c, **self.fixed.get(model, {})) for c in drawn]
        return self._configs[model]

    def planned_keys(self, model):
        return frozenset(config_key(c) for c in self.configurations(model))

    def setting(self, dataset, key):
        return datasets.settings(dataset).get(key, getattr(self, key))

    @property
    def reference(self):
        return REFERENCE

    @property
    def extensions(self):
        return COMPARE[self.protocol]

    def selected(self, results, dataset, model):
        return selected(results, dataset, model, self.planned_keys(model))

    def search_records(self, results, dataset, model):
        return search_records(results, dataset, model, self.planned_keys(model))

    def jobs(self, dataset, path, results, phase):
        """The jobs of ``phase`` (search | seed; a seed phase includes the ablations) on one dataset; a model's
        seeds only once its search is complete."""
        jobs = []
        for model in self.models:
            searched = self.searched(model)
            if phase == 'search' and searched:
                jobs += [dict(protocol=self.protocol, dataset=dataset, path=path, model=model, phase='search', index=i,
                              seed=self.seeds[0], config=c) for i, c in enumerate(self.configurations(model))]
            if phase != 'seed':
                continue
            if not searched:
                jobs.append(dict(protocol=self.protocol, dataset=dataset, path=path, model=model, phase='seed', index=0,
                                 seed=self.seeds[0], config={}))
                continue
            best = self.selected(results, dataset, model)
            if best is None or len(self.search_records(results, dataset, model)) < len(self.planned_keys(model)):
                continue   # the search is not complete: no selection yet
            seeds = self.seeds if self.trainable(model) else self.seeds[:1]   # no randomness: one run
            jobs += [dict(protocol=self.protocol, dataset=dataset, path=path, model=model, phase='seed', index=best['index'],
                          seed=s,
                          config=best['config'], **({'search': best} if s == best['seed'] else {}))
                     for s in seeds]
            if self.ablations:
                jobs += [dict(protocol=self.protocol, dataset=dataset, path=path, model=model, phase='ablation',
                              index=best['index'], seed=s,
                              config=dict(best['config'], **{part: False}))
                         for part in MODELS[model].cls.ablations for s in seeds]
        return jobs


# ---- datasets and the names of a run's files

def dataset_path(spec):
    """A dataset's folder: Data/<its folder> for a declared or generated one (``datasets.get``), or the folder given."""
    d = datasets.get(spec)
    return spec if d is None else d.path


def dataset_slug(spec):
    """The folder name of a dataset's runs and per-row files: 'yfcc100m=0.02' -> 'yfcc100m_0.02'; a dataset given as
    a folder path -> that path with its separators as '_' (so it stays under --save_dir and --rows_dir)."""
    return spec.replace('=', '_').strip(os.sep).replace(os.sep, '_')


def prepare(spec):
    """The dataset's folder, built first by its declared command when it is not there."""
    path = dataset_path(spec)
    if os.path.exists(os.path.join(path, 'test.npy')):
        return path
    d = datasets.get(spec)
    if d.source is not None and not os.path.exists(d.source):
        raise SystemExit(f'error: {d.source}: the input of dataset {spec} is not there')
    cmd = [sys.executable, os.path.join('scripts', d.build[0]), *d.build[1:], '--out', path]
    print('$ ' + ' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return path


def run_name(job):
    """The run's folder under ``--save_dir``: <dataset>/<model>/<phase>_<index>_s<seed>[_no-<part>...]."""
    run = f"{dataset_slug(job['dataset'])}/{job['model']}/{job['phase']}_{job['index']}_s{job['seed']}"
    if job['phase'] == 'ablation':
        run += '_' + '_'.join(f'no-{k}' for k, v in sorted(job['config'].items()) if v is False)
    return run


def rows_folder(rows_dir, dataset):
    """Where a dataset's per-row test metrics and its ``history.npz`` go."""
    return os.path.join(rows_dir, dataset_slug(dataset))


def rows_path(rows_dir, job):
    """Per-row test metrics of a seed or ablation run: <model>_<configuration hash>_s<seed>.npz, so a rerun of
    the model at another configuration (a new grid, a new selection, a part switched off) never overwrites them."""
    digest = hashlib.sha1(config_key(job['config']).encode()).hexdigest()[:8]
    return os.path.join(rows_folder(rows_dir, job['dataset']), f"{job['model']}_{digest}_s{job['seed']}.npz")
