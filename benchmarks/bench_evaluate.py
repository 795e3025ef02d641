"""Evaluation inference vs a bare forward loop on the same in-memory batches.

``lesionkit.evaluate.predict.predict_batches`` (host→device copy, forward, softmax, scatter into the output by
index) against ``for x in batches: model(x)`` under ``torch.inference_mode``. Same model, same batches, same
device; data loading is excluded from both (it is the same DataLoader code either way). Reports images/s and the
ratio (target ≥ 0.85). Usage::

    .venv/bin/python benchmarks/bench_evaluate.py [--model resnet18] [--img-size 128] [--batch-size 32] \
        [--batches 12] [--repeats 3] [--device auto] [--tta none]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tta", default="none")
    a = ap.parse_args()

    from lesionkit.evaluate.predict import predict_batches, tta_views
    from lesionkit.models.factory import ModelSpec, create_model

    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    torch.manual_seed(0)
    model = create_model(ModelSpec(name=a.model, num_outputs=a.classes, img_size=a.img_size)).to(dev).eval()
    cl = dev.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    amp = "bf16" if dev.type == "cuda" else "off"
    batches = [{"image": torch.randn(a.batch_size, 3, a.img_size, a.img_size),
                "index": torch.arange(i * a.batch_size, (i + 1) * a.batch_size)} for i in range(a.batches)]
    n = a.batches * a.batch_size

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    @torch.inference_mode()
    def bare() -> None:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
        for b in batches:
            x = b["image"].to(dev, non_blocking=True)
            if cl:
                x = x.to(memory_format=torch.channels_last)
            with ctx:
                for v in tta_views(x, a.tta):
                    model(v)
        sync()

    def ours() -> None:
        predict_batches([model], batches, n, a.classes, binary=False, tta=a.tta, device=dev, amp=amp, channels_last=cl)
        sync()

    bare()
    ours()  # warm-up
    tb, to = [], []
    for _ in range(a.repeats):  # interleaved so drifting machine load hits both alike
        t = time.perf_counter()
        bare()
        tb.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours()
        to.append(time.perf_counter() - t)
    bare_s, ours_s = min(tb), min(to)
    res = {"device": str(dev), "torch_threads": torch.get_num_threads(), "model": a.model, "img_size": a.img_size,
           "batch_size": a.batch_size, "images": n, "tta": a.tta, "bare_img_s": round(n / bare_s, 1),
           "evaluate_img_s": round(n / ours_s, 1), "ratio": round(bare_s / ours_s, 3)}
    print(json.dumps(res))
    print("\n| device | model | px | batch | TTA | bare img/s | evaluate img/s | ratio |\n|---|---|---|---|---|---|---|---|")
    print(f"| {res['device']} | {a.model} | {a.img_size} | {a.batch_size} | {a.tta} | {res['bare_img_s']} | "
          f"{res['evaluate_img_s']} | {res['ratio']} |")


if __name__ == "__main__":
    main()
