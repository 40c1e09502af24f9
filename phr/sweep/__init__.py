"""The equal-budget sweep behind RESULTS.md (``scripts/tune.py`` is its command line).

    plan.py     what is run: datasets, each model's configurations (drawn from the model's own ``search``), the jobs
    records.py  the results file: reading it (a damaged line is reported, not fatal), appending, which record counts
    runner.py   running the jobs, one ``python train.py`` process each, ``--jobs`` at once
    stats.py    the seed-paired bootstrap over test rows and its verdict
    report.py   RESULTS.md and the figures, from the results file and the per-row files alone
"""
