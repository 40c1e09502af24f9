"""A dataset folder's statistics, or the authors' pickled files of a folder rewritten once in the safe integer form
(``scripts/dataset.py``):

    python scripts/dataset.py stats   Data/demo                  # counts and statistics of a folder
    python scripts/dataset.py convert Data/yfcc --allow_pickle   # rewrite a pickled folder once in the safe form
"""
import argparse
import sys

from data_load import DataError, convert_folder, load_dataset


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('command', choices=['stats', 'convert'])
    p.add_argument('path')
    p.add_argument('--allow_pickle', action='store_true', help="opt in to reading the authors' pickled files")
    return p


def run(args):
    try:
        if args.command == 'convert':
            if not args.allow_pickle:
                sys.exit('error: convert unpickles the original files; pass --allow_pickle if you trust them')
            convert_folder(args.path)
        else:
            for k, v in load_dataset(args.path, allow_pickle=args.allow_pickle).stats().items():
                print(f'{k:28s} {v}')
    except DataError as e:
        sys.exit(f'error: {e}')
