#!/usr/bin/env bash
# Copy of ../shared/gpu_check.sh, adapted: a last step times full-ranking validation (every one of the preset's
# 23,054 hashtags a candidate, #28 point 2) against a training epoch on CUDA. Whole call kept under ~10 minutes.
# Run from the repo root, the commit given from here (the device copy has no .git):
#   device run "COMMIT=<git rev-parse --short HEAD> bash results/gpu/gpu_check.sh"
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu_out}; mkdir -p "$out"
DATA=${DATA:-yfcc100m}; GEN=${GEN:---preset yfcc100m}; DEV=${DEV:-cuda}
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
  echo "== commit ${COMMIT:-not given (the device gets no .git: pass COMMIT=\$(git rev-parse --short HEAD) in the run command)}"
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pyg', g.__version__)"
  echo "== generate"; time timeout 150 python3 scripts/generate.py $GEN
  echo "== bench";    timeout 240 python3 scripts/bench.py --device $DEV --data_path Data/$DATA --models GCN_PHR no_att GCN_PHR_plus --steps 5
  echo "== train";    time timeout 150 python3 train.py --device $DEV --data_path Data/$DATA --num_epoch 2 \
                        --no_progress --save_dir /tmp/gpu_runs --run_name gpu
  echo "== full-ranking bench"; timeout 50 python3 scripts/bench.py --device $DEV --data_path Data/$DATA \
                        --full GCN_PHR GCN_PHR_plus ConTagNet kNN --steps 3
  echo "== train, full ranking"; time timeout 60 python3 train.py --device $DEV --data_path Data/$DATA --num_epoch 1 \
                        --protocol full --no_progress --save_dir /tmp/gpu_runs --run_name gpu_full
} 2>&1 | tee "$out/gpu_report.txt"
