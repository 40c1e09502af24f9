"""A dataset shaped like the authors' YFCC100M / Instagram data, generated and partitioned: ``python scripts/generate.py --help`` (the flags and
what they do are those of ``phr.data.synthetic.build_parser``)."""
from phr.data.synthetic import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
