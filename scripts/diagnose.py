"""What a trained checkpoint learned: embedding statistics and score parts: ``python scripts/diagnose.py --help`` (the flags and
what they do are those of ``phr.experiments.diagnose.build_parser``)."""
from phr.experiments.diagnose import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
