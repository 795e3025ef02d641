"""Skin tone from images: CIELab, individual typology angle (ITA), threshold presets, agreement with human labels.

Modules: :mod:`~lesionkit.skintone.lab` (the pinned Lab conversion, ITA), :mod:`~lesionkit.skintone.thresholds`
(presets), :mod:`~lesionkit.skintone.strategies` (per-image estimators), :mod:`~lesionkit.skintone.agreement`
(metrics against human Fitzpatrick labels), :mod:`~lesionkit.skintone.plots`, :mod:`~lesionkit.skintone.run`
(the ``label-skintone`` and ``skintone-agreement`` stages).
"""
