"""phr: the suite around the paper's reproduction (``train.py``, ``model.py``, ``data_load.py``, ``evaluation.py`` at
the top of the checkout). Layers, each importing only those below it:

    phr.util        atomic writes, device / seed / machine
    phr.data        the partition script, the generator, readers of real posts and their text features
    phr.core        what every model is (``Recommender``, ``Posts``, ``HParam``) and the sparse-table helpers:
                    below model.py, which builds the paper's GCN-PHR on them
    phr.models      shared signals, baselines, kNN and the floors, extensions, the registry of every model by name
    phr.training    sampling, losses, checkpoints, run folders, torchrun helpers, model hooks
    phr.sweep       the equal-budget sweep and the generated pages
    phr.serve, phr.experiments   what the commands of ``scripts/`` call

``pip install -e .`` (the README's install command) makes it importable; nothing edits ``sys.path``.
"""
import os

# the checkout (an editable install): where train.py, Data/, results/ and docs/ are
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
