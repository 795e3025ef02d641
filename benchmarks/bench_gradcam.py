"""Grad-CAM throughput relative to plain inference on the same images (target: ≥ 35 %).

Both sides get the same pre-decoded, normalised batches (decoding is shared by both, so it is left out) of
``--n`` synthetic images at ``--img-size`` px, random-init timm models (``--models``), batch ``--batch-size``:

* ``inference``: ``model(x)`` under ``torch.inference_mode`` (what evaluation does);
* ``gradcam``: :class:`lesionkit.explain.cam.CAM` (forward, gradient of the predicted-class score down to the
  target layer only) + :func:`upsample_normalize` to the input size + the energy fractions on 6 masks — the
  per-image work of ``lesionkit gradcam``'s statistics pass;
* ``gradcam+gradcam++``: both maps from the same pass (the CLI default);
* ``pytorch-grad-cam``: the reference library's ``GradCAM`` on the same batches (full backward), when importable.

Each figure is the best of ``--repeats`` timed passes after one warm-up. Nothing here is asserted in tests.
Run: ``.venv/bin/python benchmarks/bench_gradcam.py [--n 256] [--img-size 128] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def timed(fn, batches, repeats: int, device: torch.device) -> float:
    """Best images/s over ``repeats`` passes over ``batches`` (after one warm-up batch)."""
    fn(batches[0])
    best = 0.0
    n = sum(len(b) for b in batches)
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--models", default="resnet18,efficientnet_b0,convnext_atto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    import timm

    from lesionkit.explain.cam import CAM, upsample_normalize
    from lesionkit.explain.stats import KINDS, energy_fractions

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    s = args.img_size
    batches = [torch.randn(min(args.batch_size, args.n - i), 3, s, s, generator=g).to(device)
               for i in range(0, args.n, args.batch_size)]
    masks = [(torch.rand(len(b), len(KINDS), s, s, generator=g) > 0.8).float().to(device) for b in batches]
    avail = [torch.ones(len(b), len(KINDS), dtype=torch.bool, device=device) for b in batches]
    rows = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=7).eval().to(device)

        def infer(x: torch.Tensor, model=model) -> None:
            with torch.inference_mode():
                model(x).softmax(1)

        row = {"model": name, "inference": timed(infer, batches, args.repeats, device)}
        for methods in (("gradcam",), ("gradcam", "gradcam++")):
            cam = CAM(model, None, methods)
            idx = {id(b): i for i, b in enumerate(batches)}

            def run(x: torch.Tensor, cam=cam, methods=methods, idx=idx) -> None:
                res = cam(x)
                up = upsample_normalize(res.maps[methods[0]], (s, s))
                i = idx[id(x)]
                energy_fractions(up, masks[i], avail[i])

            row["+".join(methods)] = timed(run, batches, args.repeats, device)
            cam.close()
        try:
            from pytorch_grad_cam import GradCAM

            lib = GradCAM(model=model, target_layers=[CAM(model).module])
            row["pytorch-grad-cam"] = timed(lambda x, lib=lib: lib(input_tensor=x, targets=None), batches, args.repeats,
                                             device)
        except ImportError:
            row["pytorch-grad-cam"] = None
        row["gradcam_ratio"] = row["gradcam"] / row["inference"]
        row["gradcam+gradcam++_ratio"] = row["gradcam+gradcam++"] / row["inference"]
        rows.append(row)
    env = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "n": args.n, "img_size": s, "batch_size": args.batch_size}
    print(json.dumps({"env": env, "results": rows}, indent=2))
    print("\n| model | inference img/s | Grad-CAM img/s (ratio) | Grad-CAM + ++ img/s (ratio) | pytorch-grad-cam img/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        lib = "-" if r["pytorch-grad-cam"] is None else f"{r['pytorch-grad-cam']:.1f}"
        print(f"| {r['model']} | {r['inference']:.1f} | {r['gradcam']:.1f} ({100 * r['gradcam_ratio']:.0f} %) | "
              f"{r['gradcam+gradcam++']:.1f} ({100 * r['gradcam+gradcam++_ratio']:.0f} %) | {lib} |")


if __name__ == "__main__":
    main()
