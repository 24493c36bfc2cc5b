"""The embedder training recipe's parts: splits, batches, figures, and what gets shipped."""

from __future__ import annotations


import numpy as np
import torch
from PIL import Image

from pipeline.datasets import load_yolo
from pipeline.embedders import TRAINED_EMBEDDER, build_net, get_spec
from pipeline.training.embedder import (FROZEN_BLOCKS, LogoViews, LookAlikeBatches, _to_batch, autocontrast_grey,
                                        class_means, embed_views, network_input, real_crop_views, serving_transform,
                                        trained_state, two_view_targets)
from pipeline.training.metrics import retrieval_figures
from pipeline.training.synth import Icon, split_of
from tests.conftest import FIXTURES


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


def test_arcface_centres_start_at_each_class_mean_embedding():
    net = build_net(get_spec(TRAINED_EMBEDDER))  # shipped weights, as --init starts from
    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 160, 40], [40, 60, 210]], dtype=np.float32)
    images = np.clip(colours[[0, 0, 0, 1, 1, 1, 2, 2, 2], :, None, None] + rng.normal(0, 12, (9, 3, 160, 160)), 0, 255)
    views = LogoViews(images.astype(np.uint8), np.repeat(np.arange(3), 3))
    centres = class_means(net, views, views=2)
    assert centres.shape == (3, net.head.out_features)
    assert torch.allclose(centres.norm(dim=1), torch.ones(3), atol=1e-5)
    expected = torch.nn.functional.normalize(embed_views(net, views.images[[0, 1]]).mean(0), dim=0)
    assert torch.allclose(centres[0], expected, atol=1e-5)  # the first two views of class 0, not the third
    nearest = (embed_views(net, views.images) @ centres.T).argmax(1)
    assert nearest.tolist() == views.labels.tolist()


def test_generated_marks_are_fixed_designs_that_render_and_differ():
    from pipeline.training.marks import generated_mark
    from pipeline.training.synth import render_icon

    glyph = Icon("glyph", "Glyph", "000000", '<svg viewBox="0 0 24 24"><path d="M2 2h20v20H2z"/></svg>')
    marks = [generated_mark(seed, [glyph]) for seed in range(12)]
    assert generated_mark(3, [glyph]) == marks[3]
    assert len({m.svg for m in marks}) == 12 and all(m.multicolour for m in marks)
    for mark in marks[:4]:
        image = render_icon(mark, 120, "000000")
        # cropped to what is drawn, which fills most of the design's box (the text fits inside it)
        assert 60 <= max(image.size) <= 120


def test_network_input_keeps_colour_only_for_colour_models():
    spec = get_spec(TRAINED_EMBEDDER)
    net = build_net(spec, trained=False)
    transform, size = serving_transform(spec, net)
    crop = Image.new("RGB", (90, 40), (200, 30, 30))
    colour, grey = network_input(crop, transform, grey=False), network_input(crop, transform, grey=True)
    assert colour.shape == (3, size, size) and grey.shape == (size, size)
    assert colour.dtype == np.uint8 and colour[0].mean() > colour[1].mean() + 50  # red stays red
    batch = _to_batch(np.stack([colour, colour]))
    assert batch.shape == (2, 3, size, size) and -1.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert _to_batch(np.stack([grey])).shape == (1, 3, size, size)


def test_favoured_classes_join_about_half_the_batches():
    labels = np.repeat(np.arange(60), 5)
    batches = LookAlikeBatches(labels, classes=8, per_class=4, seed=1, favoured=(58, 59))
    with_favoured = sum(bool({58, 59} & set(labels[batches.next()].tolist())) for _ in range(400))
    assert 150 < with_favoured < 260  # ~half by design, plus the few drawn at random anyway


def test_real_photo_boxes_become_labelled_crops(tmp_path):
    root = FIXTURES / "real-drinks"
    spec = get_spec(TRAINED_EMBEDDER)
    transform, size = serving_transform(spec, build_net(spec, trained=False))
    views, classes = real_crop_views(root, "test", 2, transform, size, False, 0, tmp_path)
    boxes = [a for photo in load_yolo(root, skip_empty_boxes=True).photos for a in photo.annotations]
    assert views.images.shape == (2 * len(boxes), 3, size, size)
    assert sorted(classes[i] for i in views.labels[::2]) == sorted(a.label for a in boxes)
    again, _ = real_crop_views(root, "test", 2, transform, size, False, 0, tmp_path)  # from the cache
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(views.images))


def test_the_grey_view_in_training_is_the_grey_crop_serving_feeds():
    spec = get_spec(TRAINED_EMBEDDER)
    transform, _ = serving_transform(spec, build_net(spec, trained=False))
    logo = Image.open(next((FIXTURES / "colour-logos").glob("*.png"))).convert("RGB").resize((120, 60))
    made = autocontrast_grey(_to_batch(network_input(logo, transform, grey=False)[None]))
    served = _to_batch(network_input(logo, transform, grey=True)[None])
    assert made.shape == served.shape
    assert float((made - served).abs().mean()) < 0.02 and float((made - served).abs().max()) < 0.25
    assert float(made[0, :, 0, 80].abs().max()) == 0.0  # the padding above a wide logo stays mid grey


def test_distillation_targets_are_the_colour_and_grey_passes_summed():
    net = build_net(get_spec(TRAINED_EMBEDDER)).eval()
    rng = np.random.default_rng(0)
    batch = _to_batch(rng.integers(0, 256, (2, 3, 160, 160), dtype=np.uint8))
    targets = two_view_targets(net, batch)
    with torch.no_grad():
        summed = net(batch) + net(autocontrast_grey(batch))
    assert torch.allclose(targets, torch.nn.functional.normalize(summed, dim=1), atol=1e-5)
    with torch.no_grad():
        assert float((targets * net(batch)).sum(1).min()) < 0.9999  # the grey pass moves it: not the colour one
