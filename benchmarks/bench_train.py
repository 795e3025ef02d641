"""Training throughput: ``lesionkit train`` (cache → DataLoader workers → augmentation → AMP step → bookkeeping)
vs a bare timm loop (the same model, batch, input size, optimizer and device, on tensors already in memory).

Target: engine steps/s ≥ 90 % of the bare loop (data loading and bookkeeping overhead ≤ 10 %). The engine time
is ``run.json`` ``timings.train_s`` (training epochs only: loader iteration, transfer, step, scheduler, logging;
validation excluded); the first epoch (worker start-up, warm-up) is excluded by comparing epochs 2..E.

Run: .venv/bin/python benchmarks/bench_train.py [--model resnet18] [--img-size 64] [--batch-size 64] [--n 1024]
     [--epochs 3] [--workers 2] [--device auto] [--aug light]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def bare_loop(model_name: str, img_size: int, batch: int, steps: int, device: str, amp: str, channels_last: bool) -> float:
    """Steps/s of a plain timm training loop on a fixed in-memory batch (after 5 warm-up steps)."""
    import timm

    torch.manual_seed(0)
    m = timm.create_model(model_name, num_classes=1).to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device).float()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    lossf = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss = lossf(m(x).reshape(-1).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n", type=int, default=1024, help="synthetic training+validation images")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--aug", default="light")
    ap.add_argument("--keep", default=None, help="folder to keep the workspace in")
    a = ap.parse_args()

    from lesionkit.console import settings
    from lesionkit.splits.run import run_split
    from lesionkit.synthetic import generate
    from lesionkit.train.config import TrainConfig, resolve_device
    from lesionkit.train.run import run_train

    settings.progress = False
    ws = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_train."))
    syn = ws / "syn"
    if not (syn / "manifest.parquet").exists():
        generate(syn, n=a.n, size=max(64, a.img_size), seed=0, workers=min(8, os.cpu_count() or 2))
    if not (ws / "splits.json").exists():
        run_split(syn / "manifest.parquet", ws / "splits.json", n_folds=8, seed=0)
    device = resolve_device(a.device)
    cfg = TrainConfig(manifest=str(syn / "manifest.parquet"), splits=str(ws / "splits.json"), target="malignant",
                      model=a.model, img_size=a.img_size, epochs=a.epochs, batch_size=a.batch_size,
                      num_workers=a.workers, aug=a.aug, device=a.device, lr=1e-3, schedule="cosine",
                      cache_dir=str(ws / "cache"), run_dir=str(ws / "run"), overwrite=True, progress=False)
    rec = run_train(cfg)
    steps = rec["steps_per_epoch"]
    ep = rec["timings"]["epoch_s"]
    hist = list(csvrows(ws / "run" / "history.csv"))
    # per-epoch training time = epoch_s minus validation; recompute from the time column is not possible, so use
    # train_s over all epochs and (more robust) epochs 2..E from epoch_s minus the mean validation time
    train_s = rec["timings"]["train_s"]
    eng_all = steps * a.epochs / train_s
    r = resolve_static_amp(device)
    bare = bare_loop(a.model, a.img_size, a.batch_size, max(20, steps * 2), "cuda:0" if device == "cuda" else "cpu",
                     r["amp"], r["channels_last"])
    res = {
        "model": a.model, "img_size": a.img_size, "batch_size": a.batch_size, "device": device,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "workers": a.workers, "aug": a.aug, "steps_per_epoch": steps, "epochs": a.epochs,
        "engine_steps_per_s": round(eng_all, 3), "bare_steps_per_s": round(bare, 3),
        "ratio": round(eng_all / bare, 3), "epoch_s": ep, "val_auc_last": hist[-1]["val_auc"] if hist else None,
    }
    print(json.dumps(res, indent=2))
    print("\n| model | px | batch | device | workers | engine steps/s | bare steps/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {a.model} | {a.img_size} | {a.batch_size} | {device} | {a.workers} | {eng_all:.2f} | {bare:.2f} | "
          f"{eng_all / bare:.1%} |")


def csvrows(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def resolve_static_amp(device: str) -> dict:
    return {"amp": "bf16" if device == "cuda" else "off", "channels_last": device == "cuda"}


if __name__ == "__main__":
    main()
