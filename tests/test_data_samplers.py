"""Class weights vs scikit-learn; EpochSampler determinism, balance and sharding; exact eval sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DistributedSampler

from lesionkit.data.samplers import (
    EpochSampler,
    ShardedEvalSampler,
    class_weights,
    parse_class_weights,
)
from lesionkit.errors import InputError, UsageError

# 7 imbalanced classes (HAM10000-like proportions, scaled down)
COUNTS = [33, 51, 110, 12, 111, 670, 14]
TARGETS = np.repeat(np.arange(7), COUNTS)
np.random.default_rng(0).shuffle(TARGETS)


def test_balanced_weights_match_sklearn():
    w = class_weights(TARGETS, 7, "balanced")
    ref = compute_class_weight("balanced", classes=np.arange(7), y=TARGETS)
    assert w.dtype == torch.float32 and w.shape == (7,)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)
    # W_c = N / (C * N_c) by hand for one class
    assert w[3].item() == pytest.approx(len(TARGETS) / (7 * 12))


def test_weights_ignore_missing_targets_and_other_modes():
    t = np.array([0, 0, 0, 1, -1, -1])
    np.testing.assert_allclose(class_weights(t, 2, "balanced").numpy(), [4 / 6, 4 / 2])
    assert class_weights(t, 2, "none").tolist() == [1.0, 1.0]
    assert class_weights(t, 2, "1,2.5").tolist() == [1.0, 2.5]
    assert class_weights(t, 2, [3, 4]).tolist() == [3.0, 4.0]
    assert parse_class_weights(" Balanced ") == "balanced"
    with pytest.raises(UsageError, match="2 classes"):
        class_weights(t, 2, [1, 2, 3])
    with pytest.raises(UsageError):
        class_weights(t, 2, "heavy")
    with pytest.raises(InputError, match="mel"):
        class_weights(np.array([0, 0, 1]), 3, "balanced", classes=["nv", "bcc", "mel"])


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch():
    for mode in ("none", "balanced", "oversample"):
        a = EpochSampler(TARGETS, mode, seed=7)
        b = EpochSampler(TARGETS, mode, seed=7)
        a.set_epoch(3)
        b.set_epoch(3)
        assert list(a) == list(b), mode
        b.set_epoch(4)
        assert list(a) != list(b), mode
        c = EpochSampler(TARGETS, mode, seed=8)
        c.set_epoch(3)
        assert list(a) != list(c), mode
        a.set_epoch(3)
        assert list(a) == list(a), mode  # iterating twice gives the same epoch


def test_none_mode_is_a_permutation_and_unshuffled_is_identity():
    s = EpochSampler(TARGETS, "none", seed=1)
    idx = list(s)
    assert sorted(idx) == list(range(len(TARGETS))) and idx != list(range(len(TARGETS)))
    assert list(EpochSampler(TARGETS, "none", seed=1, shuffle=False)) == list(range(len(TARGETS)))


def test_oversample_equalises_classes_and_keeps_every_index():
    s = EpochSampler(TARGETS, "oversample", seed=0)
    idx = np.array(list(s))
    counts = np.bincount(TARGETS[idx], minlength=7)
    assert (counts == max(COUNTS)).all()
    assert len(idx) == len(s) == 7 * max(COUNTS)
    assert set(range(len(TARGETS))) <= set(idx.tolist())  # every original row appears at least once
    # the majority class is not resampled: each of its rows exactly once
    major = np.flatnonzero(TARGETS == 5)
    assert np.array_equal(np.sort(idx[TARGETS[idx] == 5]), major)


def test_balanced_draws_classes_uniformly():
    s = EpochSampler(TARGETS, "balanced", seed=0)
    draws = []
    for e in range(10):
        s.set_epoch(e)
        draws += list(s)
    assert len(draws) == 10 * len(TARGETS)
    freq = np.bincount(TARGETS[np.array(draws)], minlength=7) / len(draws)
    # 10,010 draws: binomial sd of a 1/7 share is 0.0035; allow 5 sd
    np.testing.assert_allclose(freq, 1 / 7, atol=0.018)
    # while the natural frequency of class 5 is 0.67
    assert np.mean(TARGETS == 5) > 0.6


@pytest.mark.parametrize("mode", ["none", "balanced", "oversample"])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_shards_are_disjoint_and_cover_the_epoch(mode, world):
    t = TARGETS[:101]  # 101 is not a multiple of 2, 3 or 4
    full = EpochSampler(t, mode, seed=5)
    full.set_epoch(2)
    epoch = full.epoch_indices()
    shards = []
    for r in range(world):
        s = EpochSampler(t, mode, seed=5, num_replicas=world, rank=r)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    assert len({len(x) for x in shards}) == 1  # equal lengths (DDP needs the same number of steps)
    total = len(shards[0]) * world
    assert total - len(epoch) < world
    # positions r::world of the padded epoch: together, every position of the epoch exactly once + padding
    padded = np.concatenate([epoch, epoch[: total - len(epoch)]])
    for r in range(world):
        assert shards[r] == padded[r::world].tolist()
    merged = sorted(x for sh in shards for x in sh)
    assert merged == sorted(padded.tolist())
    if mode == "none":
        assert set(merged) == set(range(len(t)))


def test_none_mode_matches_distributed_sampler_layout():
    """Same padding/sharding semantics as torch's DistributedSampler (given the same epoch order)."""
    n, world = 10, 4
    t = np.zeros(n, dtype=np.int64)
    for r in range(world):
        ours = list(EpochSampler(t, "none", seed=0, num_replicas=world, rank=r, shuffle=False))
        ref = list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False))
        assert ours == ref


@pytest.mark.parametrize("n,world", [(10, 3), (7, 4), (2, 4), (0, 2), (9, 1)])
def test_sharded_eval_sampler_exact_cover(n, world):
    shards = [list(ShardedEvalSampler(n, num_replicas=world, rank=r)) for r in range(world)]
    merged = [i for s in shards for i in s]
    assert sorted(merged) == list(range(n)) and len(merged) == n  # each index exactly once, no padding
    for r, s in enumerate(shards):
        assert s == list(range(r, n, world)) and len(ShardedEvalSampler(n, world, r)) == len(s)
    assert list(ShardedEvalSampler(list("abcde"))) == [0, 1, 2, 3, 4]


def test_sampler_argument_errors():
    with pytest.raises(UsageError, match="sampler"):
        EpochSampler(TARGETS, "smote")
    with pytest.raises(InputError, match="missing target"):
        EpochSampler(np.array([0, 1, -1]), "balanced")
    with pytest.raises(ValueError):
        EpochSampler(TARGETS, "none", num_replicas=2, rank=2)
