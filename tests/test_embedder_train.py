"""The embedder training recipe's parts: splits, batches, figures, and what gets shipped."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.training.embedder import FROZEN_BLOCKS, LookAlikeBatches, trained_state
from pipeline.training.metrics import retrieval_figures
from pipeline.embedders import TRAINED_EMBEDDER, build_net, get_spec
from pipeline.training.synth import split_of


def test_splits_are_fixed_and_disjoint():
    slugs = [f"logo{i}" for i in range(2000)]
    splits = [split_of(s) for s in slugs]
    assert splits == [split_of(s) for s in slugs]
    shares = {name: splits.count(name) / len(slugs) for name in ("train", "val", "test")}
    assert 0.05 < shares["test"] < 0.15 and 0.05 < shares["val"] < 0.15 and shares["train"] > 0.7


def test_look_alike_batches_pair_each_seed_with_its_nearest_class():
    labels = np.repeat(np.arange(40), 6)
    batches = LookAlikeBatches(labels, classes=8, per_class=4, seed=0)
    angles = (torch.arange(40) // 2).float() * 0.07  # classes 2k and 2k+1 share a centre: each other's look-alike
    batches.update(torch.stack([angles.cos(), angles.sin()], dim=1))
    assert all(batches.nearest[c] == c ^ 1 for c in range(40))
    for _ in range(20):
        index = batches.next()
        classes = labels[index]
        present = set(classes.tolist())
        assert len(index) == 32 and len(present) == 8
        assert all(np.sum(classes == c) == 4 for c in present)
        # the 4 seeds bring their look-alikes: at least 4 classes of the batch come with their twin
        assert sum(c ^ 1 in present for c in present) >= 4


def test_retrieval_figures_on_known_vectors():
    labels = np.repeat(np.arange(3), 3)  # per class: 2 gallery views, 1 query
    vectors = torch.eye(3).repeat_interleave(3, dim=0)
    vectors[8] = torch.tensor([1.0, 0.0, 0.0])  # class 2's query looks like class 0
    figures = retrieval_figures(vectors, labels, gallery=2)
    assert abs(figures["nn_top1"] - 2 / 3) < 1e-6 and figures["recall@5"] == 1.0


def test_only_the_trained_tensors_are_shipped_in_fp16():
    net = build_net(get_spec(TRAINED_EMBEDDER), trained=False)
    state = trained_state(net)
    assert any(k.startswith("head.") for k in state)
    assert not any(k.startswith(("backbone.conv_stem", "backbone.bn1", "backbone.conv_head"))
                   or any(k.startswith(f"backbone.blocks.{i}.") for i in range(FROZEN_BLOCKS)) for k in state)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
