#!/usr/bin/env bash
# Prepared 2026-12-04, not yet run on a GPU (the session was refused a second machine). Run from the repo root,
# the commit given from here (the device copy has no .git): COMMIT=<git rev-parse --short HEAD> bash results/gpu/gpu_tune.sh
# (locally: OUT=/tmp/gt DEV=cpu bash results/gpu/gpu_tune.sh, about 2 minutes on the 2-core VM).
# scripts/tune.py on a GPU (docs/speed.md "On a GPU"): a tiny end-to-end sweep per protocol, runs given the device
# by --devices, each its own results, rows, runs and report; everything it prints and writes goes to $OUT.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu_tune_out}; mkdir -p "$out"; DEV=${DEV:-cuda:0}
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
  echo "== commit ${COMMIT:-not given (the device gets no .git: pass COMMIT=\$(git rev-parse --short HEAD) in the run command)}"
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pyg', g.__version__)"
  for proto in sampled full; do
    echo "== tune --protocol $proto --devices $DEV"
    time timeout 150 python3 scripts/tune.py --protocol $proto --datasets yfcc100m=0.05 \
      --models GCN_PHR GCN_PHR_plus ConTagNet kNN user_popularity --configs 2 --max_epoch 3 --seeds 0 1 --no-ablations \
      --jobs 2 --devices $DEV --results $out/tune_$proto.jsonl --rows_dir /tmp/rows_$proto \
      --save_dir /tmp/runs_$proto --out $out/RESULTS_$proto.md 2>&1 | grep -v "it/s"
    python3 - "$out/tune_$proto.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f'{len(rows)} runs:', sorted({(r["model"], r["status"], r["device"]) for r in rows}))
PY
  done
} 2>&1 | tee "$out/gpu_tune_report.txt"
