"""What another model's score adds to TagRank, measured with a paired interval: ``python scripts/score_features.py
--help`` (the flags and what they do are those of ``phr.experiments.score_features.build_parser``)."""
from phr.experiments.score_features import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
