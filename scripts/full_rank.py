"""Trained checkpoints under full ranking, with paired intervals: ``python scripts/full_rank.py --help`` (the flags and
what they do are those of ``phr.experiments.full_rank.build_parser``)."""
from phr.experiments.full_rank import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
