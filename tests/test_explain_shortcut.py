"""A planted shortcut is visible in the attention statistics.

The SAME synthetic training images (ink marks drawn on a random half, independently of the lesion) with two
labellings: "shortcut" — the label is the ink (ink == label, correlation 1); "control" — the label is the lesion's
malignancy (ink independent of the label). A tiny CNN is trained on each; on held-out images that ALL carry ink,
the fraction of Grad-CAM energy (evidence for class 1) on the ink mask must be clearly higher for the shortcut
model. Only the labels differ, so the difference in attention is caused by the planted correlation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from lesionkit.explain.cam import CAM, upsample_normalize
from lesionkit.explain.stats import InputGeometry, energy_fractions
from lesionkit.synthetic import make_specs, render_sample

SIZE = 64


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(),
        )  # stride 4: a 16x16 map at 64 px, fine enough to resolve thin ink marks
        self.fc = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _render(specs: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    imgs, labels, ink = [], [], []
    geo = InputGeometry(img_size=SIZE)
    for s in specs:
        img, masks = render_sample(s)
        imgs.append(img)
        labels.append(int(s.malignant))
        ink.append(geo.mask(masks["ink"]))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    return x, torch.tensor(labels), torch.from_numpy(np.stack(ink))


def _train(x: torch.Tensor, y: torch.Tensor, seed: int = 0, epochs: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    net = TinyCNN()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def _ink_attention(net: nn.Module, x: torch.Tensor, ink: torch.Tensor) -> float:
    with CAM(net, "features") as cam:
        res = cam(x, torch.ones(len(x), dtype=torch.long))  # evidence for "malignant"
    up = upsample_normalize(res.maps["gradcam"], (SIZE, SIZE))
    e, _ = energy_fractions(up, ink[:, None], torch.ones(len(x), 1, dtype=torch.bool))
    return float(np.nanmean(e[:, 0].numpy()))


def test_planted_ink_shortcut_raises_ink_attention() -> None:
    torch.set_num_threads(2)
    specs = make_specs(260, SIZE, seed=7)
    train, test = specs[:200], specs[200:]
    rng = np.random.default_rng(0)
    x, malignant, ink = _render([dataclasses.replace(s, ink=bool(rng.random() < 0.5)) for s in train])
    has_ink = (ink.flatten(1).sum(1) > 0).long()
    assert abs(float(np.corrcoef(has_ink.numpy(), malignant.numpy())[0, 1])) < 0.2  # control: ink independent
    x_te, _, ink_te = _render([dataclasses.replace(s, ink=True) for s in test])
    assert (ink_te.flatten(1).sum(1) > 0).all()

    net_sc = _train(x, has_ink)  # label == ink
    net_ct = _train(x, malignant)  # label == malignancy
    with torch.no_grad():  # the shortcut model calls most inked test images class 1
        called = float(net_sc(x_te).argmax(1).float().mean())

    att_sc = _ink_attention(net_sc, x_te, ink_te)
    att_ct = _ink_attention(net_ct, x_te, ink_te)
    area = float(ink_te.mean())
    print(f"ink energy: shortcut {att_sc:.3f}, control {att_ct:.3f}, ink area {area:.3f}; shortcut model calls "
          f"{called:.2f} of the inked test images class 1")
    assert called > 0.4  # the ink pushes inked test images to class 1 (label 1 meant "ink" in training)
    assert att_sc > att_ct + 0.08
    assert att_sc > 2 * att_ct
    assert att_sc > 2 * area  # the shortcut model looks at the ink far more than a uniform map would
