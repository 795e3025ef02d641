"""``lesionkit evaluate``: predictions, metrics (overall, per class, per group, bootstrap CIs), plots, HTML report.

Pure, array-in / numbers-out modules (importable without torch): :mod:`.metrics`, :mod:`.bootstrap`,
:mod:`.fairness`, :mod:`.thresholds`, :mod:`.calibration`, :mod:`.groups`; then :mod:`.plots`, :mod:`.report`;
inference in :mod:`.predict`; the stage in :mod:`.run` (:func:`~lesionkit.evaluate.run.run_evaluate`).
"""
