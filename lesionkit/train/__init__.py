"""Training stage: optimisers and layer groups (``optim``), per-step LR schedules (``schedules``), losses
(``losses``), the LR range test (``lr_find``), and the training engine (``engine``, ``distributed``, ``config``, ``run``).
"""
