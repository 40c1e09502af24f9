"""Time and memory of building TagRank (features + cross-fitted LightGBM) and of full-ranking validation and test on
one dataset, one thread:

    OMP_NUM_THREADS=1 python results/bench/tagrank_fit.py Data/howyoutag_makers [knob=value ...]
"""
import time, torch, sys, resource
from data_load import load_dataset
from phr.training.checkpoint import build_model
from evaluation import evaluate, full_split
torch.set_num_threads(1)
d = load_dataset(sys.argv[1], verbose=False)
kw = dict(a.split('=') for a in sys.argv[2:])
kw = {k: (int(v) if v.isdigit() else float(v) if v.replace('.', '').isdigit() else v) for k, v in kw.items()}
t = time.time()
m = build_model('TagRank', d, **kw)
print('fit s', round(time.time() - t, 1), m.best_iterations, 'candidate recall', round(m.recall_of_candidates, 4), flush=True)
for split in ('val', 'test'):
    t = time.time()
    r = evaluate(m, full_split(d, getattr(d, split)), (10,))
    print(split, round(r['recall@10'], 4), round(r['ndcg@10'], 4), round(time.time() - t, 1), 's', flush=True)
print('peak MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
print(list(zip(m.feature_names, m.importance.round(0))))
