"""Tiny datasets built in temporary folders by the project's own generator and partition script."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import generate  # noqa: E402
from data_load import load_dataset  # noqa: E402

TINY = ['--preset', 'demo', '--scale', '0.1', '--num_neg', '50', '--seed', '7']   # 400 videos, 20 users, 110 tags


def make_tiny(path, *extra):
    generate.main(TINY + ['--out', str(path), *extra])
    return str(path)


@pytest.fixture(scope='session')
def tiny_dir(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp('tiny') / 'data')


@pytest.fixture(scope='session')
def tiny_data(tiny_dir):
    return load_dataset(tiny_dir, verbose=False)


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    dst = tmp_path / 'data'
    shutil.copytree(tiny_dir, dst)
    return str(dst)
