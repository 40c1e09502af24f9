"""The authors' 80/10/10 per-user split of a raw dataset folder: ``python scripts/partition.py --help`` (the flags and
what they do are those of ``phr.data.partition.build_parser``)."""
from phr.data.partition import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
