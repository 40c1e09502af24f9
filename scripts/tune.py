"""The equal-budget sweep behind RESULTS.md, and its report: ``python scripts/tune.py --help`` (the flags and
what they do are those of ``phr.sweep.command.build_parser``)."""
from phr.sweep.command import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
