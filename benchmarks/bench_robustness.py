"""Corruption sweep throughput vs plain inference (target: ≥ 90 % of plain inference for every corruption).

Both paths run the same loop (:func:`lesionkit.robustness.sweep.predict`): ``uint8`` cache images → device →
[corruption, batched, on the device] → evaluation transform → model (eval, bf16 autocast on CUDA) → probabilities.
Images: ``--n`` synthetic images rendered at ``--size`` px, held in memory (the sweep reads a memory-mapped cache;
reading is not what is measured). Model: ``--model`` (timm name, random init). Each configuration is timed
``--repeats`` times after one warm-up batch, alternating with a plain pass (so machine drift hits both alike);
the ratio is median plain time / median corrupted time. Single numbers on the 2-core CPU machines vary ±15 %
between runs; the paired ratio much less.

Run: ``.venv/bin/python benchmarks/bench_robustness.py [--device cuda] [--model resnet50] [--size 224] [--n 512]``
Prints JSON, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--corruptions", default="impulse:0.05,gaussian_noise:0.08,gaussian_blur:7,motion_blur:7,"
                    "defocus:3,gamma:1.5,brightness:0.8,contrast:0.75,jpeg:20,hair:20,ink:2")
    a = ap.parse_args()

    from lesionkit.models.factory import ModelSpec, create_model, data_config
    from lesionkit.robustness.corruptions import parse_corruption
    from lesionkit.robustness.run import eval_pipeline
    from lesionkit.robustness.sweep import EvalData, predict
    from lesionkit.synthetic import make_specs, render_sample

    specs = make_specs(min(a.n, 64), a.size, seed=0)
    base = [render_sample(s)[0] for s in specs]
    imgs = [base[i % len(base)] for i in range(a.n)]
    data = EvalData(images=imgs, ids=[f"id{i}" for i in range(a.n)], y=np.zeros(a.n, np.int64),
                    classes=["a", "b"], binary=False)
    cuda = a.device.startswith("cuda")
    net = create_model(ModelSpec(name=a.model, num_outputs=2, img_size=a.size)).eval().to(a.device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    dcfg = data_config(net)
    dcfg.update({"aug": "none", "cache_size": a.size})
    pipe = eval_pipeline({"data_cfg": dcfg}, a.device, channels_last=cuda)
    if not cuda:
        torch.set_num_threads(max(1, torch.get_num_threads()))

    warm = EvalData(images=imgs[: a.batch_size], ids=data.ids[: a.batch_size], y=data.y[: a.batch_size],
                    classes=data.classes, binary=False)

    def once(spec=None, level=None) -> float:
        _, t = predict(net, data, pipe, device=a.device, batch_size=a.batch_size, corruption=spec, level=level,
                       amp=cuda)
        return t

    def paired(spec, level) -> tuple[float, float]:
        """Median seconds of plain and corrupted passes, alternated so machine drift hits both alike."""
        predict(net, warm, pipe, device=a.device, batch_size=a.batch_size, corruption=spec, level=level, amp=cuda)
        tp, tc = [], []
        for _ in range(a.repeats):
            tp.append(once())
            tc.append(once(spec, level))
        return statistics.median(tp), statistics.median(tc)

    predict(net, warm, pipe, device=a.device, batch_size=a.batch_size, amp=cuda)
    plain_all = [once() for _ in range(a.repeats)]
    plain = a.n / statistics.median(plain_all)
    rows = [{"corruption": "none (plain inference)", "images_per_s": round(plain, 1), "ratio": 1.0}]
    for text in a.corruptions.split(","):
        spec = parse_corruption(text)
        tp, tc = paired(spec, spec.levels[0])
        rows.append({"corruption": str(spec), "images_per_s": round(a.n / tc, 1),
                     "plain_images_per_s": round(a.n / tp, 1), "ratio": round(tp / tc, 3)})
    dev = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                     f"{torch.get_num_threads()} threads)"
    res = {"device": dev, "model": a.model, "size": a.size, "n": a.n, "batch_size": a.batch_size,
           "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
           "min_ratio": min(r["ratio"] for r in rows[1:])}
    print(json.dumps(res, indent=2))
    print(f"\n{a.model} at {a.size}px, batch {a.batch_size}, {a.n} images, {dev}\n")
    print("| corruption | img/s | plain img/s (paired) | vs plain |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['corruption']} | {r['images_per_s']} | {r.get('plain_images_per_s', '')} | "
              f"{100 * r['ratio']:.0f}% |")


if __name__ == "__main__":
    main()
