"""The top-K hashtags of a trained checkpoint for an author and a post (of the dataset, or new): ``python scripts/recommend.py --help`` (the flags and
what they do are those of ``phr.serve.build_parser``)."""
from phr.serve import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
