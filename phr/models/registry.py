"""The registry: every model of the suite by name, one line each, and what is built from the models' declarations
(``recommender.HParam``): a model from flags or from a checkpoint's ``model_args``, train.py's model flags, and the
sweep's search spaces. Adding a model is its class (with its ``hparams`` and ``search``) and one ``register`` line.
"""
import argparse
import inspect
from dataclasses import dataclass, field

import model
from phr.models import baselines, blend, mix, neighbours, plus, rank


@dataclass(frozen=True)
class ModelSpec:
    cls: type
    label: str                                  # the name in tables (scripts/tune.py)
    short: str                                  # the short name in sentences of the reports ("GCN-PHR+ minus ...")
    fixed: dict = field(default_factory=dict)   # constructor arguments the name fixes (no_att: attention=False)

    @property
    def hparams(self):
        """The model's declared knobs (``HParam``), those the name fixes left out."""
        return tuple(h for h in self.cls.hparams if h.name not in self.fixed)

    @property
    def trainable(self):
        return self.cls.trainable


MODELS = {}   # model_name -> ModelSpec


def register(name, cls, label=None, short=None, **fixed):
    """Add a model to the registry: ``--model_name name`` builds ``cls(data, **hparams, **fixed)``; ``label`` names it
    in tables, ``short`` in the reports' sentences (both default to ``name``)."""
    MODELS[name] = ModelSpec(cls, label or name, short or name, fixed)
    return cls


# ---- the models: one line each
register('GCN_PHR', model.GCNPHR, 'GCN-PHR (paper, Fig. 2)', 'GCN-PHR')
register('Net', model.ReleasedNet, "authors' released Net (fixed)")
register('var1', model.HomogeneousNet, 'homogeneous graph (var1)')
register('no_att', model.GCNPHR, 'GCN-PHR w/o attention', attention=False)
register('GCN_PHR_plus', plus.GCNPHRPlus, 'GCN-PHR+ (extension: identity, counts, content; not the paper)', 'GCN-PHR+')
register('TagMix', mix.TagMix, 'TagMix (extension: counts + similar posts + words, full softmax; not the paper)')
register('TagBlend', blend.TagBlend, 'TagBlend (extension: counts + word and character n-gram votes + own '
         'posts + peers + hashtag centroids, weights searched; not the paper)')
register('TagRank', rank.TagRank, 'TagRank (extension: LambdaMART over the classic evidence, cross-fitted on '
         'validation; not the paper)')
register('UTM', baselines.UTM)
register('ConTagNet', baselines.ConTagNet)
register('CSMN', baselines.CSMN)
register('USHM', baselines.USHM)
register('user_popularity', neighbours.UserPopularity, "floor: user's own frequency")
register('popularity', neighbours.GlobalPopularity, 'floor: global popularity')
register('kNN', neighbours.SimilarPosts, 'similar posts + user counts (kNN)')
register('kNN_content', neighbours.SimilarPosts, 'similar posts, content alone', personal=False, mix=1.0)


def get_spec(name):
    if name not in MODELS:
        raise ValueError(f'unknown model_name {name!r}; choose from {tuple(MODELS)}')
    return MODELS[name]


def build_model(name, data, inputs=None, **hparams):
    """A model by its registry name; ``hparams`` are constructor arguments among its declared knobs (a key it does
    not declare is a ValueError naming the model and the key); the rest take their declared defaults. ``inputs``:
    the models its ``model_inputs`` knobs name, already built (``phr.training.checkpoint.build_model`` loads them),
    given to the constructor as ``<knob>_model``."""
    spec = get_spec(name)
    known = {h.name for h in spec.hparams}
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f'{name} has no hyperparameter {", ".join(unknown)} (its knobs: '
                         f'{", ".join(sorted(known)) or "none"})')
    for h in spec.hparams:   # a declared range holds however the model is built (flags, a checkpoint's model_args)
        why = h.problem(hparams.get(h.name, h.default))
        if why:
            raise ValueError(f'{name}: {h.name} {why}')
    extra = {f'{k}_model': m for k, m in (inputs or {}).items()}
    return spec.cls(data, **{h.name: hparams.get(h.name, h.default) for h in spec.hparams}, **spec.fixed, **extra)


def model_args(name, hparams):
    """What a checkpoint stores to rebuild the model: every declared knob, given or default."""
    return {h.name: hparams.get(h.name, h.default) for h in get_spec(name).hparams}


def checkpoint_model_args(name, hparams):
    """(nanoGPT's ``model_args``): name and constructor arguments."""
    return {'model_name': name, 'model_args': model_args(name, hparams)}


def hparams_from_config(name, config):
    """Constructor arguments from a dict of train.py flags (a run config): the model's declared knobs found there."""
    return {h.name: config[h.cli] for h in get_spec(name).hparams if h.cli in config}


def stored_args(name, args):
    """A checkpoint's ``model_args`` reduced to the declared knobs. Checkpoints written before the declarations
    also stored every other constructor argument (``attention``, the fixed ones): a key that is not declared is
    dropped when it holds the value the name fixes or the constructor's default (it changes nothing); any other is
    a ValueError."""
    spec = get_spec(name)
    known = {h.name for h in spec.hparams}
    params = inspect.signature(spec.cls.__init__).parameters
    out = {}
    for k, v in args.items():
        if k in known:
            out[k] = v
        elif spec.fixed.get(k, params[k].default if k in params else object()) != v:
            raise ValueError(f'{name} has no hyperparameter {k} (= {v!r})')
    return out


# ---- train.py's model flags, built from the declarations

def model_flags():
    """flag -> [(model name, HParam)] over the registry, in declaration order."""
    out = {}
    for name, spec in MODELS.items():
        for h in spec.hparams:
            out.setdefault(h.cli, []).append((name, h))
    return out


def add_model_flags(parser):
    """One argparse option per declared knob (a knob several models declare is one flag). Defaults are the
    model's own (``SUPPRESS`` here), so train.py can tell a flag given from one left out."""
    group = parser.add_argument_group('model knobs (each model takes only its own: README, "Flags")')
    for flag, owners in model_flags().items():
        h = owners[0][1]
        for other, oh in owners[1:]:
            assert (oh.type, oh.choices) == (h.type, h.choices), f'--{flag}: {other} declares it differently'
        defaults = sorted({repr(oh.default) for _, oh in owners})
        takes = ', '.join(n for n, _ in owners)
        help = f'{h.help} [{takes}; default {" / ".join(defaults)}]'
        kw = dict(default=argparse.SUPPRESS, help=help, dest=flag)
        if h.type is bool:
            group.add_argument(f'--{flag}', action=argparse.BooleanOptionalAction, **kw)
        else:
            group.add_argument(f'--{flag}', type=h.type, choices=h.choices, **kw)
    return group


def model_hparams(name, given):
    """Constructor arguments of model ``name`` from the model flags given (``given``: flag -> value); a flag the
    model does not take is a ValueError that names both."""
    spec = get_spec(name)
    by_flag = {h.cli: h for h in spec.hparams}
    wrong = sorted(f for f in given if f not in by_flag)
    if wrong:
        offered = ', '.join(f'--{f}' for f in by_flag) or 'none'
        raise ValueError(f'{name} does not take {", ".join("--" + f for f in wrong)} (its knobs: {offered})')
    return {by_flag[f].name: v for f, v in given.items()}


def search_space(name):
    """The grid the sweep draws model ``name``'s configurations from: train.py flag -> values."""
    spec = get_spec(name)
    return {k: v for k, v in spec.cls.search.items() if k not in spec.fixed}
