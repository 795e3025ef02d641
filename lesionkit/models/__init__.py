"""Models: a timm backbone + optional metadata branch + linear head (:mod:`lesionkit.models.factory`), and
checkpoint io that loads with ``torch.load(..., weights_only=True)`` (:mod:`lesionkit.models.checkpoint`).

Import the submodules directly (``from lesionkit.models.factory import create_model``); this package stays
light so importing it does not pull in timm.
"""
