"""An equal tuning budget for every model, selection on validation only, 3 seeds, paired intervals -> RESULTS.md.

    python scripts/tune.py --jobs 2             # the committed plan, resumable; one run per core
    python scripts/tune.py --protocol full --jobs 2   # the committed full-ranking plan (every hashtag a candidate)
    python scripts/tune.py --report             # only rebuild RESULTS.md (and docs/) from the committed results
    python scripts/tune.py --datasets demo=0.1 --models GCN_PHR USHM --configs 2 --max_epoch 1 \\
        --results /tmp/t.jsonl --out /tmp/T.md   # a tiny end-to-end run (its own results and report)

The protocol is in ``sweep/plan.py``; each model's search space is declared beside the model (``search``). Every
finished run is appended to ``--results`` (a small JSON-lines file, committed) and skipped when the command runs
again, so a sweep continues where it stopped, on another day or machine; RESULTS.md is always rebuilt from that
file alone. Per-row test metrics of the seed runs go to ``results/rows/``, for the intervals. Only the committed
plan writes the committed files: a run of another plan must name a ``--results`` and ``--out`` of its own.
"""
import argparse
import glob
import os
from types import SimpleNamespace


from phr.util import atomic
from phr.models.registry import MODELS, get_spec
from phr.util.runtime import resolve_device
from phr.sweep import pages, records, report, runner
from phr.training import run_folder
from phr.sweep.plan import DEFAULTS, FULL_DEFAULTS, Plan
from phr import ROOT

OUT = os.path.join(ROOT, 'RESULTS.md')
DOCS = os.path.join(ROOT, 'docs')
# the generated pages of scripts/score_features.py (what another model's score adds to TagRank): RESULTS.md ends with them
SCORE_FEATURES = os.path.join(ROOT, 'results', 'score_features')
# the committed plan of each protocol: its defaults, results file and per-row folder (RESULTS.md holds both reports)
COMMITTED = {'sampled': dict(DEFAULTS, results=os.path.join(ROOT, 'results', 'tune.jsonl'),
                             rows_dir=os.path.join(ROOT, 'results', 'rows')),
             'full': dict(FULL_DEFAULTS, results=os.path.join(ROOT, 'results', 'tune_full.jsonl'),
                          rows_dir=os.path.join(ROOT, 'results', 'rows_full'))}
# train.py flags that define the protocol, not a model's configuration: --fixed cannot set them
PROTOCOL_FLAGS = ('seed', 'data_path', 'save_dir', 'run_name', 'num_epoch', 'patience', 'batch_size', 'device',
                  'test_rows', 'overwrite', 'PATH_weight_load', 'PATH_weight_save', 'topk', 'num_neg', 'no_cuda',
                  'no_progress', 'allow_pickle', 'eval_batch', 'keep_freed_memory')
CONFIG_FLAGS = ('l_r', 'weight_decay', 'decay_embeddings', 'loss', 'num_train_neg', 'neg_sampling', 'num_workers')


def parse_fixed(item):
    """'MODEL:FLAG=VALUE' (``--fixed``) -> (model, flag, value): true / false, an int, a float, else the string. FLAG
    is one of the model's own knobs or a training flag; the protocol's flags (seed, data, budget) are refused."""
    model, _, rest = item.partition(':')
    flag, eq, value = rest.partition('=')
    if not (model and flag and eq and value):
        raise SystemExit(f'error: --fixed {item!r}: expected MODEL:FLAG=VALUE, e.g. GCN_PHR_plus:count_gate=post')
    if model not in MODELS:
        raise SystemExit(f'error: --fixed {item!r}: model {model!r} is not in the registry {tuple(MODELS)}')
    if flag in PROTOCOL_FLAGS:
        raise SystemExit(f'error: --fixed {item!r}: --{flag} is a setting of the protocol, the same for every run; '
                         f'give it to tune.py itself (--seeds, --max_epoch, ...), not to one model')
    own = {h.cli for h in get_spec(model).hparams}
    if flag not in own and flag not in CONFIG_FLAGS:
        raise SystemExit(f'error: --fixed {item!r}: {model} has no flag --{flag} (its knobs: '
                         f'{", ".join("--" + f for f in sorted(own) + list(CONFIG_FLAGS))})')
    if value.lower() in ('true', 'false'):
        return model, flag, value.lower() == 'true'
    for cast in (int, float):
        try:
            return model, flag, cast(value)
        except ValueError:
            pass
    return model, flag, value


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--protocol', default='sampled', choices=tuple(COMMITTED),
                   help="train.py --protocol of every run: sampled (the paper's 1,000 negatives) or full (every "
                        "hashtag); each has its committed plan, results file and rows folder (the defaults below)")
    p.add_argument('--datasets', nargs='+', default=None,
                   help='preset=scale (generated), howyoutag (authors\' split), howyoutag_makers (makers\' split), '
                        'rtweet, or a dataset folder (default: the protocol\'s committed plan)')
    p.add_argument('--models', nargs='+', default=None)
    p.add_argument('--configs', type=int, default=DEFAULTS['configs'], help='configurations per trainable model')
    p.add_argument('--max_epoch', type=int, default=DEFAULTS['max_epoch'])
    p.add_argument('--patience', type=int, default=DEFAULTS['patience'])
    p.add_argument('--batch_size', type=int, default=DEFAULTS['batch_size'])
    p.add_argument('--seeds', nargs='+', type=int, default=DEFAULTS['seeds'])
    p.add_argument('--jobs', type=int, default=1, help='runs at once (one per core on CPU, one per device on GPUs)')
    p.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of each run')
    p.add_argument('--devices', nargs='+', default=['cpu'],
                   help='devices given to the runs round-robin, e.g. --jobs 4 --devices cuda:0 cuda:1 cuda:2 cuda:3')
    p.add_argument('--results', default=None, help="default: the protocol's committed results file")
    p.add_argument('--rows_dir', default=None, help="default: the protocol's committed rows folder")
    p.add_argument('--save_dir', default=os.path.join(ROOT, 'runs', 'tune'))
    p.add_argument('--out', default=OUT)
    p.add_argument('--report', action='store_true', help='only rebuild --out from --results')
    p.add_argument('--fixed', nargs='+', default=[], metavar='MODEL:FLAG=VALUE',
                   help="one more fixed setting of a model, in every configuration of it, to try a variant under the "
                        "same protocol, e.g. GCN_PHR_plus:count_gate=post (true/false for switches); give it "
                        "--results, --rows_dir, --save_dir and --out of its own")
    p.add_argument('--ablations', action=argparse.BooleanOptionalAction, default=True,
                   help="after its seeds, run each of a model's ablations (parts switched off), same seeds")
    return p


def check_paths(args, committed_plan):
    """The committed results and report are written only by the committed plan (a --report of another plan may read
    the committed rows); paths name files, not folders."""
    committed = {'results': [c['results'] for c in COMMITTED.values()], 'out': [OUT],
                 'rows_dir': [c['rows_dir'] for c in COMMITTED.values()]}
    for name in ('results', 'out', 'rows_dir'):
        path = getattr(args, name)
        if name != 'rows_dir' and os.path.isdir(path):
            raise SystemExit(f'error: --{name} {path}: is a folder, expected a file')
        other = [p for p, c in COMMITTED.items() if p != args.protocol and name in c
                 and os.path.abspath(path) == os.path.abspath(c[name])]
        if other:   # the other protocol's committed file: the flag missing is --protocol, not a file of its own
            raise SystemExit(f'error: --{name} {os.path.relpath(path, ROOT)} is the committed {other[0]}-protocol '
                             f'plan\'s; give --protocol {other[0]} (this is --protocol {args.protocol})')
        if not committed_plan and os.path.abspath(path) in committed[name] and not (args.report and name == 'rows_dir'):
            raise SystemExit(f'error: this is not the committed plan (other datasets, models, budget or --fixed), '
                             f'so it would mix its runs into {os.path.relpath(path, ROOT)}: give --results, '
                             f'--rows_dir and --out of its own')
    if args.report and not os.path.exists(args.results):
        raise SystemExit(f'error: --results {args.results}: no such file (nothing to report)')
    if os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
        raise SystemExit(f'error: --save_dir {args.save_dir}: is a file, expected a folder')


def committed_plan_of(protocol):
    c = COMMITTED[protocol]
    return Plan(**{k: c[k] for k in DEFAULTS}, protocol=protocol)


def run(args):
    base = COMMITTED[args.protocol]
    for k in ('datasets', 'models', 'results', 'rows_dir'):
        if getattr(args, k) is None:
            setattr(args, k, base[k])
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise SystemExit(f'error: --models {unknown}: not in the registry {tuple(MODELS)}')
    if args.configs < 1 or args.max_epoch < 1 or args.jobs < 1:
        raise SystemExit('error: --configs, --max_epoch and --jobs must be positive')
    for dev in args.devices:   # a device this machine does not have fails every run: say so before the first
        try:
            resolve_device(dev)
        except ValueError as e:
            raise SystemExit(f'error: --devices: {e}'.replace('--device ', ''))
    fixed = {}
    for item in args.fixed:
        model, flag, value = parse_fixed(item)
        fixed.setdefault(model, {})[flag] = value
    plan = Plan(datasets=args.datasets, models=args.models, configs=args.configs, max_epoch=args.max_epoch,
                patience=args.patience, batch_size=args.batch_size, seeds=args.seeds, fixed=fixed,
                ablations=args.ablations, protocol=args.protocol)
    committed_plan = not fixed and all(os.path.abspath(v) == os.path.abspath(getattr(args, k))
                                       if k in ('results', 'rows_dir') else getattr(args, k) == v
                                       for k, v in base.items())
    ctx = SimpleNamespace(**{k: os.path.abspath(getattr(args, k)) for k in ('results', 'rows_dir', 'save_dir', 'out')},
                          jobs=args.jobs, threads=args.threads, devices=args.devices)
    check_paths(SimpleNamespace(**vars(ctx), report=args.report, protocol=args.protocol), committed_plan)
    for name in ('results', 'rows_dir', 'out'):   # a place that cannot be written is one line now, not a traceback later
        run_folder.check_writable(getattr(ctx, name), f'--{name}', folder=name == 'rows_dir')
    if not args.report:   # one sweep per results file: a second would run the same runs and write the same records
        lock = os.path.join(os.path.dirname(ctx.results), f'.{os.path.basename(ctx.results)}.lock')
        atomic.hold(lock, lambda who: f'error: --results {os.path.relpath(ctx.results)}: another tune.py is running '
                                      f'on it ({who}); wait for it to finish (this one would run the same runs), '
                                      f'or give this sweep a --results of its own')
    results = records.load(ctx.results)
    protocols = {r['protocol'] for r in results}
    if results and args.protocol not in protocols:   # a report of another protocol's records: all "not run yet"
        raise SystemExit(f'error: --results {os.path.relpath(ctx.results)} holds {" and ".join(sorted(protocols))} '
                         f'runs only; give --protocol {sorted(protocols)[0]} to report them (this would report none)')

    def write_report():
        if not committed_plan:
            atomic.write_text(ctx.out, report.report(ctx, plan, results))
            print(f'wrote {ctx.out}')
            return
        # the committed plans: RESULTS.md (each protocol's report from its own file), docs/results.md and its
        # figures, the README's headline table
        reports = []
        for protocol, c in COMMITTED.items():
            cplan = plan if protocol == args.protocol else committed_plan_of(protocol)
            cctx = ctx if protocol == args.protocol else \
                SimpleNamespace(**dict(vars(ctx), results=c['results'], rows_dir=c['rows_dir']))
            recs = results if protocol == args.protocol else records.load(c['results'])
            if recs:
                reports.append((cctx, cplan, recs))
        extra = [open(f).read() for f in sorted(glob.glob(os.path.join(SCORE_FEATURES, '*.md')))]
        atomic.write_text(ctx.out, '\n\n'.join([report.report(*r) for r in reports] + extra))
        atomic.write_text(os.path.join(DOCS, 'results.md'), pages.results_page(reports, DOCS))
        readme = pages.readme_path()
        with open(readme) as f:
            text = f.read()
        atomic.write_text(readme, pages.update_readme(text, pages.headline(reports)))
        print(f'wrote {ctx.out}, {os.path.relpath(DOCS, ROOT)}/results.md and its figures, the headline of README.md')

    failed = [] if args.report else runner.execute(ctx, plan, results, on_dataset_done=write_report)
    write_report()
    if failed:
        raise SystemExit(f'error: {len(failed)} run(s) FAILED (the lines above say why; their records are in '
                         f'{os.path.relpath(ctx.results)}, and the next invocation tries them again): '
                         + ', '.join(failed[:3]) + (', ...' if len(failed) > 3 else ''))
    return results
