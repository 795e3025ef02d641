"""Environment report for bug reports: library versions, CUDA, GPUs, CPU count."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from typing import Any

from lesionkit import __version__

_LIBS = [
    ("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"), ("cv2", "opencv"), ("numpy", "numpy"),
    ("pandas", "pandas"), ("pyarrow", "pyarrow"), ("skimage", "scikit-image"), ("sklearn", "scikit-learn"),
    ("PIL", "pillow"), ("typer", "typer"), ("rich", "rich"), ("matplotlib", "matplotlib"),
]


def collect() -> dict[str, Any]:
    info: dict[str, Any] = {
        "lesionkit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    for mod, name in _LIBS:
        try:
            m = importlib.import_module(mod)
            info[name] = getattr(m, "__version__", "unknown")
        except Exception as e:  # an import failure is itself useful in a bug report
            info[name] = f"not importable ({type(e).__name__}: {e})"
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["cuda_version"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if info["cuda_available"] else []
        info["torch_threads"] = torch.get_num_threads()
    except Exception as e:
        info["cuda_available"] = f"unknown ({e})"
        info["gpus"] = []
    return info
