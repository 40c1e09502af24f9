"""Your own posts (JSON lines, CSV, Twitter API JSON, #HowYouTagTweets) -> a dataset folder: ``python scripts/import_posts.py --help`` (the flags and
what they do are those of ``phr.data.posts.build_parser``)."""
from phr.data.posts import build_parser, run


def main(argv=None):
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    main()
