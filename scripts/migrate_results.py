"""Rewrite a sweep's results file into the current record format (``sweep.records.FORMAT``), once, in place.

    python scripts/migrate_results.py results/tune.jsonl

Format 1 -> 2: every trainable model's config names ``decay_embeddings`` (runs from before it joined the grid ran
with train.py's default, off) and every record its ``protocol`` (all format-1 runs were sampled), so the sweep needs
no default-filling when it reads the file. Records keep their
order and every other field; a record already in format 2 is unchanged, so running it twice changes nothing.
The report built from the file is the same before and after (tests/test_tune.py checks it on a committed sample).
"""
import argparse
import os

from phr.sweep.records import migrate_file


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('results', help='a results file of scripts/tune.py')
    p.add_argument('--out', default=None, help='write here instead of in place')
    args = p.parse_args(argv)
    if not os.path.isfile(args.results):
        raise SystemExit(f'error: {args.results}: no such results file')
    recs = migrate_file(args.results, args.out)
    print(f'{args.out or args.results}: {len(recs)} records in the current format')


if __name__ == '__main__':
    main()
