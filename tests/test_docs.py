"""The README is a front door that stays true: its flags are the parser's, its layout names files that exist, its
headline is the report's; the report writes the docs pages and figures from the results alone."""
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import train
from phr.sweep import command as tune
from phr.sweep import pages

README = open(os.path.join(ROOT, 'README.md')).read()


def section(title):
    return README.split(f'## {title}\n', 1)[1].split('\n## ', 1)[0]


def test_readme_flags_are_the_parsers_flags():
    named = set(re.findall(r'`--([A-Za-z_][\w-]*)', section('Flags')))
    named = {'no_cuda' if n == 'no-cuda' else n[3:] if n.startswith('no-') else n for n in named}
    parser = {a.dest for a in train.build_parser()._actions if a.dest != 'help'}
    assert parser - named == set(), f'flags of train.py the README does not name: {sorted(parser - named)}'
    assert named - parser - {'help'} == set(), f'flags the README names that train.py lacks: {sorted(named - parser)}'


def test_readme_layout_names_files_that_exist_and_is_short():
    for name in re.findall(r'^\| `([^`]+)`', section('Where things live'), flags=re.M):
        assert os.path.exists(os.path.join(ROOT, name.rstrip('/'))), name
    assert len(README.splitlines()) <= 200


def test_headline_is_the_reports(tmp_path):
    # the block between the markers is exactly what the committed results give
    reports = []
    for protocol, c in tune.COMMITTED.items():
        from phr.sweep import records
        recs = records.load(c['results'])
        if recs:
            ctx = type('Ctx', (), dict(results=c['results'], rows_dir=c['rows_dir'], threads=1))
            reports.append((ctx, tune.committed_plan_of(protocol), recs))
    block = re.search(re.escape(pages.MARKERS[0]) + '.*?' + re.escape(pages.MARKERS[1]), README, flags=re.S).group(0)
    assert block == pages.headline(reports)
    with pytest.raises(SystemExit, match='no headline markers'):
        pages.update_readme('no markers here', block)


def test_docs_pages_link_what_exists():
    for page in ('results.md', 'extension.md', 'findings.md', 'speed.md'):
        text = open(os.path.join(ROOT, 'docs', page)).read()
        for link in re.findall(r'\]\(([^)#]+)\)', text):
            if not link.startswith('http'):
                assert os.path.exists(os.path.join(ROOT, 'docs', link)), (page, link)
