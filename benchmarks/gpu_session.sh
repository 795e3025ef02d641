#!/usr/bin/env bash
# Issue 5's GPU checks in one call, for a session that is lent a GPU machine (its device time is short: one
# prepared call, about 6-8 minutes on an H100). From the repository root on that machine:
#
#     bash benchmarks/gpu_session.sh            # results under $OUT (the device tool's folder) or /tmp/lk_gpu_out
#
# It uses that machine's python3 (PyTorch, timm, OpenCV, pandas, pyarrow, typer, rich, xxhash are in its image)
# with PYTHONPATH=. instead of an install, and checks, on synthetic data with a learnable malignant label:
#   1. the CUDA tests of the suite (robustness numpy/torch parity on the GPU);
#   2. training with --amp bf16, --amp fp16 (GradScaler) and off: finite losses, validation AUC, and that each
#      checkpoint loads with torch.load(weights_only=True);
#   3. a 1-GPU torchrun run (NCCL);
#   4. throughput: `lesionkit train` against a bare timm loop (bench_train.py), resnet50 and efficientnet_b0 at
#      224 px, bf16 + channels_last, 8 loader workers.
# A dry run on a CPU machine: DEVICE=cpu QUICK=1 bash benchmarks/gpu_session.sh (tiny model, AMP off, gloo).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lk_gpu_out}
WS=${WS:-/tmp/lk_gpu}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WS"
LOG=$OUT/gpu_session.log
exec > >(tee -a "$LOG") 2>&1
LK="$PY -m lesionkit --no-progress"
status=0
step() { echo; echo "=== $* ($(date +%T))"; }
check() { if "$@"; then echo "ok: $*"; else echo "FAILED ($?): $*"; status=1; fi; }

if [ "$QUICK" = 1 ]; then N=240; SIZE=64; MODEL=resnet10t; PX=32; EPOCHS=2; BN=256; BEPOCHS=2; BS=32; BW=0
else N=3000; SIZE=256; MODEL=resnet18; PX=128; EPOCHS=4; BN=4096; BEPOCHS=3; BS=128; BW=8; fi

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
$PY - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
missing = [m for m in ("timm", "torchvision", "cv2", "pandas", "pyarrow", "typer", "rich", "xxhash", "skimage", "sklearn", "yaml") if importlib.util.find_spec(m) is None]
print("missing modules:", missing or "none")
EOF

step "synthetic data ($N images at $SIZE px) and a grouped split"
check $LK synth --n "$N" --size "$SIZE" --seed 0 --min-severity 0.6 --workers 8 --out "$WS/syn" --overwrite
check $LK split "$WS/syn/manifest.parquet" --out "$WS/splits.json" --folds 5 --test-frac 0.2 --seed 0 --overwrite

if [ "$DEVICE" = cuda ]; then
  step "CUDA tests"
  check $PY -m pytest -q -p no:cacheprovider tests/test_robustness_corruptions.py -k cuda
fi

common=("$WS/syn/manifest.parquet" --splits "$WS/splits.json" --target malignant --model "$MODEL" --img-size "$PX"
        --epochs "$EPOCHS" --batch-size 64 --num-workers "$BW" --device "$DEVICE" --lr 1e-3 --schedule cosine
        --out "$WS/runs" --overwrite)
if [ "$DEVICE" = cuda ]; then AMPS="bf16 fp16 off"; else AMPS="off"; fi
for amp in $AMPS; do
  step "train --amp $amp"
  check $LK train "${common[@]}" --amp "$amp" --name "amp_$amp"
done

step "torchrun, one process ($([ "$DEVICE" = cuda ] && echo NCCL || echo gloo))"
check $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m lesionkit --no-progress train "${common[@]}" --name ddp1

step "runs: last validation row, timings, checkpoint loads with weights_only=True"
$PY - "$WS/runs" <<'EOF' | tee "$OUT/runs_summary.txt"
import csv, json, math, sys
from pathlib import Path
import torch, yaml
bad = 0
for run in sorted(Path(sys.argv[1]).iterdir()):
    hist = list(csv.DictReader(open(run / "history.csv")))
    last = hist[-1] if hist else {}
    rj = json.loads((run / "run.json").read_text())
    ck = sorted((run / "checkpoints").glob("*.pt"))
    ok_load = all(isinstance(torch.load(p, map_location="cpu", weights_only=True), dict) for p in ck)
    losses = [float(r.get("train_loss", "nan")) for r in hist]
    finite = all(math.isfinite(x) for x in losses)
    print(f"{run.name}: epochs {len(hist)}, train_loss {losses[-1] if losses else None}, val_auc {last.get('val_auc')}, "
          f"finite {finite}, checkpoints {len(ck)} load {ok_load}, train_s {rj.get('timings', {}).get('train_s')}, "
          f"amp {yaml.safe_load(open(run / 'config.yaml')).get('amp')}, device {rj.get('device')}, "
          f"world_size {rj.get('world_size')}, backend {rj.get('backend')}")
    bad += (not finite) or (not ok_load) or not ck
sys.exit(1 if bad else 0)
EOF
[ "${PIPESTATUS[0]}" = 0 ] || { echo "FAILED: run summary"; status=1; }

step "throughput: lesionkit train vs a bare timm loop"
if [ "$QUICK" = 1 ]; then BENCH_MODELS="resnet10t"; BPX=32; else BENCH_MODELS="resnet50 efficientnet_b0"; BPX=224; fi
for m in $BENCH_MODELS; do
  check $PY benchmarks/bench_train.py --model "$m" --img-size "$BPX" --batch-size "$BS" --n "$BN" --epochs "$BEPOCHS" \
    --workers "$BW" --device "$DEVICE" --aug light --keep "$WS/bench"  # one data set and cache for both models
done
echo; echo "gpu_session: $([ $status = 0 ] && echo all steps passed || echo SOME STEPS FAILED) (log: $LOG)"
exit $status
