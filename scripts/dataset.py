"""A dataset folder's statistics, or its pickled files converted once to the safe form: ``python scripts/dataset.py --help`` (the flags and
what they do are those of ``phr.data.folder.build_parser``)."""
from phr.data.folder import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
