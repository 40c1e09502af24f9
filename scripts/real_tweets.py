"""The rtweet smoke test: recorded tweets, imported, trained, reported: ``python scripts/real_tweets.py --help`` (the flags and
what they do are those of ``phr.experiments.real_tweets.build_parser``)."""
from phr.experiments.real_tweets import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
