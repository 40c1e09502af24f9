"""Time training steps and evaluation of the models on this machine: ``python scripts/bench.py --help`` (the flags and
what they do are those of ``phr.experiments.bench.build_parser``)."""
from phr.experiments.bench import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
