"""Train the bundled logo embedder: EfficientNet-Lite0 fine-tuned for logo retrieval.

    python -m pipeline.training.embedder --minutes 60 --real ../shared/datasets/real-drinks \
        --init assets/embedder/logo-embedder.pt --out assets/embedder

Data (``--embedder`` picks the registered spec; a grey spec sees grey crops only):
- every simple-icons logo of the ``train`` split (:func:`pipeline.training.synth.split_of`;
  the ``test`` split, which the retrieval benchmark uses, is never seen), each rendered in
  ``--views`` independent colour schemes (brand colour, white on brand, dark on a tint...);
- for colour specs, emoji, flags and colour icons (:func:`pipeline.training.synth.load_colour_graphics`)
  in their own colours, and ``--marks`` generated glyph-and-wordmark designs
  (:mod:`pipeline.training.marks`);
- with ``--real DIR``, crops of the boxes of a YOLO photo dataset's ``train`` split
  (real-drinks: :func:`pipeline.datasets.real_drinks_split`), one class per brand, so
  that the same brand in different photos gives real positive pairs.

Every rendered logo is "photographed" by :func:`pipeline.training.synth.photograph`
(rotation, perspective, colour shifts, blur, noise, JPEG, occlusion, clutter). Crops
are preprocessed exactly as the embedder preprocesses them when serving and cached
as uint8 under ``.cache/``. With ``--colourways P`` each crop of a brand class
(simple-icons, generated marks, real photos; not the colour graphics, whose colours
are what sets a flag apart) is reprinted at training time with probability P in
another colourway (:func:`recolour`: inverted, grey, grey inverted, hues turned,
channels swapped), so that one mark in any colourway is one class: shape first.

Model: the registered spec: the bundled ImageNet weights, stem and first three
blocks frozen, the later blocks fine-tuned, GeM of the last two stages, then a
linear head to 256-d. ``--init`` starts from a shipped weights file (the grey model). ``--device``
trains on a GPU when there is one (the data is rendered on the CPU first, with ``--workers`` processes).

Loss (pytorch-metric-learning): ArcFace over every training class (each class's
centre competes with all others, so the nearest look-alikes dominate) plus a
Multi-Similarity loss on the hard pairs its miner finds in each batch. Batches
are built around look-alikes: half the classes of a batch are drawn at random and
each brings the class whose ArcFace centre is nearest to its own; half the
batches also bring one real-photo brand. The ``val`` splits (simple-icons and
colour graphics) pick the checkpoint; the learning rate follows a time-based
warm-up and cosine so that a run fits a wall-clock budget, and ``--resume``
continues a run where its last checkpoint left it, schedule included.

``--distil`` trains on the same crops with another loss: a frozen copy of the ``--init``
network is the teacher, and the student learns to give in one pass what the teacher gives in
two (:func:`two_view_targets`: each crop in colour and in grey, the vectors summed), which
names one mark in other colourways better but would cost serving a second pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from pipeline.datasets import load_yolo
from pipeline.embedders import (TRAINED_EMBEDDER, EmbedderSpec, EmbeddingNet, build_net, crop_transform,
                                 data_config_of, get_spec, load_trained_weights, prepare_crop)
from pipeline.training.fonts import use_fonts
from pipeline.training.marks import FONTS, generated_mark
from pipeline.training.metrics import retrieval_figures
from pipeline.training.synth import (Icon, fetch_simple_icons, load_colour_graphics, load_icons, logo_card,
                                     photograph, split_of)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
FROZEN_BLOCKS = 3  # stem + blocks 0-2 (strides 2-8) keep their ImageNet weights
DATA_VERSION = 2

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass
class LogoViews:
    """Preprocessed crops ``images`` (uint8: [N, S, S] grey or [N, 3, S, S] colour) and class ``labels`` [N]."""

    images: np.ndarray
    labels: np.ndarray


def network_input(image: Image.Image, transform: Transform, grey: bool) -> np.ndarray:
    """The crop as the embedder feeds it (its own preparation and ``transform``), back in uint8."""
    tensor = transform(prepare_crop(image, grayscale=grey))
    array = np.round((tensor.numpy() * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)
    return array[0] if grey else array


def _render(job: tuple[Icon, int, int, Transform, bool]) -> np.ndarray:
    icon, views, seed, transform, grey = job
    torch.set_num_threads(1)
    rng = np.random.default_rng([seed, zlib.crc32(icon.slug.encode())])
    return np.stack([network_input(photograph(logo_card(icon, rng), rng), transform, grey) for _ in range(views)])


def serving_transform(spec: EmbedderSpec, net: EmbeddingNet) -> tuple[Transform, int]:
    """The spec's own serving transform and its input side, so training sees what serving sees."""
    data_config = data_config_of(spec, net)
    return crop_transform(data_config, spec.crop_mode), data_config["input_size"][-1]


def _cached(cache: Path, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()`` saved once under ``cache`` by a hash of ``key`` (written atomically), then memory-mapped."""
    path = cache / f"embedder-views-{zlib.crc32(json.dumps([DATA_VERSION, key]).encode()):08x}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    images = make()
    partial = path.with_suffix(".partial.npy")
    np.save(partial, images)
    partial.replace(path)
    return np.load(path, mmap_mode="r")


def make_views(icons: list[Icon], views: int, transform: Transform, size: int, grey: bool,
               seed: int, cache: Path, workers: int) -> LogoViews:
    """``views`` photographed crops per icon (``transform`` makes them ``size`` px), cached on disk."""

    def render() -> np.ndarray:
        shape = (len(icons) * views, size, size) if grey else (len(icons) * views, 3, size, size)
        images = np.empty(shape, np.uint8)
        started = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            jobs = [(icon, views, seed, transform, grey) for icon in icons]
            for n, block in enumerate(pool.map(_render, jobs, chunksize=8)):
                images[n * views:(n + 1) * views] = block
                if n % 500 == 0:
                    log.info("rendered %d/%d logos (%.0f s)", n, len(icons), time.perf_counter() - started)
        return images

    key = [[i.slug for i in icons], views, size, seed, grey]
    return LogoViews(_cached(cache, key, render), np.repeat(np.arange(len(icons)), views))


def real_crop_views(root: Path, split: str, views: int, transform: Transform, size: int, grey: bool,
                    seed: int, cache: Path) -> tuple[LogoViews, tuple[str, ...]]:
    """``views`` crops of every box of a YOLO dataset's ``split``: the box loosened or tightened a little,
    colours and sharpness jittered as another photo of the same pack would be. One class per dataset class.
    """
    dataset = load_yolo(root, skip_empty_boxes=True).split(split)
    boxes = [(photo.path, a.box, dataset.classes.index(a.label)) for photo in dataset.photos
             for a in photo.annotations]
    if not boxes:
        raise ValueError(f"{root}: no boxes in the {split} split")
    jitter = v2.Compose([v2.ColorJitter(0.3, 0.3, 0.3, 0.03), v2.RandomApply([v2.GaussianBlur(5, (0.2, 1.5))], 0.3)])

    def render() -> np.ndarray:
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        out = []
        for path, box, _ in boxes:
            with Image.open(path) as photo:
                photo = photo.convert("RGB")
                for view in range(views):
                    slack = 0.0 if view == 0 else 0.12
                    w, h = box.width, box.height
                    x0, y0, x1, y1 = (box.x0 + w * rng.uniform(-slack, slack), box.y0 + h * rng.uniform(-slack, slack),
                                      box.x1 + w * rng.uniform(-slack, slack), box.y1 + h * rng.uniform(-slack, slack))
                    crop = photo.crop((int(max(0, x0)), int(max(0, y0)), int(min(photo.width, max(x1, x0 + 4))),
                                       int(min(photo.height, max(y1, y0 + 4)))))
                    out.append(network_input(crop if view == 0 else jitter(crop), transform, grey))
        return np.stack(out)

    key = [str(root), split, len(boxes), views, size, seed, grey]
    labels = np.repeat(np.array([label for *_, label in boxes]), views)
    return LogoViews(_cached(cache, key, render), labels), dataset.classes


COLOURWAYS = ("inverted", "grey", "grey inverted", "hue turned", "channels swapped", "figure and ground swapped")


def shift_and_scale(batch: torch.Tensor, generator: torch.Generator, translate: float = 0.06,
                    scale: tuple[float, float] = (0.85, 1.1)) -> torch.Tensor:
    """Each crop of ``batch`` [N, C, S, S] moved by up to ``translate`` of its side and scaled within ``scale``, a
    draw of its own per crop, in one grid sample on the batch's device; pixels it uncovers are 0 (mid grey).

    One call for the whole batch: a loop of per-crop transforms held a GPU step to the speed of the CPU issuing it.

    Example:
        >>> square = -torch.ones(2, 1, 8, 8); square[:, :, 2:6, 2:6] = 1.0
        >>> moved = shift_and_scale(square, torch.Generator().manual_seed(0))
        >>> moved.shape, bool((moved != square).any()), bool(moved.abs().max() <= 1.0)
        (torch.Size([2, 1, 8, 8]), True, True)
    """
    count = batch.shape[0]
    factor = torch.empty(count).uniform_(*scale, generator=generator)
    shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * 2 * translate  # the side spans 2 in grid units
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor  # output -> input coordinates
    theta[:, :, 2] = -shift / factor[:, None]
    grid = torch.nn.functional.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)
    return torch.nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def luminance(batch: torch.Tensor) -> torch.Tensor:
    """The grey [N, S, S] of crops [N, 3, S, S]: PIL's "L" weights (ITU-R 601), as serving's grey crops are made."""
    return 0.299 * batch[:, 0] + 0.587 * batch[:, 1] + 0.114 * batch[:, 2]


def recolour(batch: torch.Tensor, ways: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``batch`` [N, 3, S, S] in [-1, 1] with crop i reprinted in colourway ``ways[i]`` (an index into
    :data:`COLOURWAYS`, -1: unchanged).

    Packaging prints one mark in many colourways (a can white on red, its cap red on
    white, a monochrome stamp, a dark pack with the mark inverted); a person names the
    mark by its shape and letters. A training crop reprinted in another colourway is
    a positive pair that only shape can explain.

    Example:
        >>> red = -torch.ones(2, 3, 4, 4); red[:, 0] = 1.0
        >>> out = recolour(red, torch.tensor([0, -1]), torch.Generator().manual_seed(0))
        >>> out[0, :, 0, 0].tolist(), out[1, :, 0, 0].tolist()  # inverted: cyan; the other unchanged
        ([-1.0, 1.0, 1.0], [1.0, -1.0, -1.0])
    """
    out = batch.clone()
    grey = luminance(batch).unsqueeze(1).expand_as(batch)
    for i in torch.nonzero(ways >= 0).flatten().tolist():
        way = COLOURWAYS[int(ways[i])]
        if way == "inverted":
            out[i] = -batch[i]
        elif way == "grey":
            out[i] = grey[i]
        elif way == "grey inverted":
            out[i] = -grey[i]
        elif way == "figure and ground swapped":
            out[i] = swap_figure_and_ground(batch[i])
        elif way == "hue turned":
            shift = float(torch.rand((), generator=generator)) - 0.5
            out[i] = v2.functional.adjust_hue(batch[i] * 0.5 + 0.5, shift) * 2 - 1
        else:
            order = torch.randperm(3, generator=generator)
            out[i] = batch[i][order]
    return out


def swap_figure_and_ground(crop: torch.Tensor, border: int = 4) -> torch.Tensor:
    """A two-tone crop [3, S, S] in [-1, 1] with its mark's and its panel's colours traded (see :func:`recolour`).

    Example:
        >>> red_on_white = torch.ones(3, 16, 16); red_on_white[1:, 6:10, 6:10] = -1.0
        >>> swapped = swap_figure_and_ground(red_on_white)
        >>> swapped[:, 0, 0].tolist(), swapped[:, 8, 8].tolist()  # white on red
        ([1.0, -1.0, -1.0], [1.0, 1.0, 1.0])
    """
    frame = torch.cat([crop[:, :border].reshape(3, -1), crop[:, -border:].reshape(3, -1),
                       crop[:, :, :border].reshape(3, -1), crop[:, :, -border:].reshape(3, -1)], dim=1)
    panel = frame.median(dim=1).values
    distance = (crop - panel[:, None, None]).abs().sum(0)
    mark = crop[:, distance >= 0.5 * distance.max()].mean(dim=1) if distance.max() > 0 else panel
    return (mark[:, None, None] + panel[:, None, None] - crop).clamp(-1.0, 1.0)


def autocontrast_grey(batch: torch.Tensor) -> torch.Tensor:
    """Crops [N, 3, S, S] in [-1, 1] in grey, each stretched to the full range: what a grey embedder's serving
    (:func:`pipeline.embedders.prepare_crop`) feeds, computed on the network's input. The padding (mid grey, 0 or
    uint8 128, where the crop does not fill the square) takes no part in the stretch and stays 0.

    Example:
        >>> dark = torch.full((1, 3, 4, 4), -0.5); dark[..., :2] = -0.9; dark[..., 3] = 0.0
        >>> autocontrast_grey(dark)[0, 0, 0].tolist()  # -0.9 -> -1, -0.5 -> 1, the padding kept
        [-1.0, -1.0, 1.0, 0.0]
    """
    lum = luminance(batch)
    pad = (batch.abs() < 0.01).all(dim=1)
    low = lum.masked_fill(pad, float("inf")).flatten(1).min(dim=1).values
    high = lum.masked_fill(pad, float("-inf")).flatten(1).max(dim=1).values
    flat = ~torch.isfinite(low) | (high - low < 1e-6)  # all padding, or one shade: nothing to stretch
    low, high = torch.where(flat, -1.0, low), torch.where(flat, 1.0, high)
    stretched = (lum - low[:, None, None]) / (high - low)[:, None, None] * 2 - 1
    return stretched.masked_fill(pad, 0.0).clamp(-1.0, 1.0).unsqueeze(1).expand_as(batch)


@torch.no_grad()
def two_view_targets(teacher: EmbeddingNet, batch: torch.Tensor) -> torch.Tensor:
    """What the ``teacher`` sees of each crop in two passes, its colour and its grey view, summed to unit length.

    The bundled network fed both views of a logo and summing the two vectors names one mark in other colourways
    better than one pass (devicon with its queries in other colourways 0.86 -> 0.91, exact nearest neighbour), but
    costs a second pass when serving. ``--distil`` teaches one pass to give what the two give.
    """
    colour, grey = teacher(torch.cat([batch, autocontrast_grey(batch)])).chunk(2)
    return torch.nn.functional.normalize(colour + grey, dim=1)


def freeze_early_layers(net: EmbeddingNet) -> list[torch.nn.Module]:
    """Freeze the stem and the first blocks; return the modules that stay in eval mode."""
    backbone = net.backbone
    frozen = [backbone.conv_stem, backbone.bn1, *backbone.blocks[:FROZEN_BLOCKS]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def trained_state(net: EmbeddingNet, half: bool = True) -> dict[str, torch.Tensor]:
    """The tensors training changes (fine-tuned blocks and head); in fp16 to ship in ``assets/``."""
    prefixes = tuple(f"backbone.blocks.{i}." for i in range(FROZEN_BLOCKS, len(net.backbone.blocks))) + ("head.",)
    return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
            for k, v in net.state_dict().items() if k.startswith(prefixes)}


def _to_batch(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 crops (grey [N, S, S] or colour [N, 3, S, S]) -> the network's [-1, 1] input [N, 3, S, S] on ``device``
    (moved as bytes, a quarter of the floats)."""
    batch = torch.from_numpy(np.array(images, dtype=np.uint8)).to(device).float().div_(127.5).sub_(1.0)
    if batch.dim() == 3:
        batch = batch.unsqueeze(1).expand(-1, 3, -1, -1)
    return batch.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def embed_views(net: EmbeddingNet, images: np.ndarray, batch: int = 128) -> torch.Tensor:
    """The crops' embeddings [N, D] on the CPU, computed on whatever device ``net`` is on."""
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net(_to_batch(images[i:i + batch], device)).cpu() for i in range(0, len(images), batch)])


class LookAlikeBatches:
    """Batches of ``classes`` logos x ``per_class`` views, half the logos paired with a look-alike.

    ``favoured`` classes (real-photo brands: few classes, many crops) join half the
    batches, one at a time, so that their real positive pairs are not drowned out.
    """

    def __init__(self, labels: np.ndarray, classes: int, per_class: int, seed: int,
                 favoured: tuple[int, ...] = ()) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        self.classes, self.per_class = classes, per_class
        self.rng = np.random.default_rng(seed)
        self.nearest: np.ndarray | None = None
        self.favoured = favoured

    def update(self, centres: torch.Tensor) -> None:
        """Look-alikes from the loss's class centres [C, D]: each class's nearest other class."""
        unit = torch.nn.functional.normalize(centres.detach().float(), dim=1)
        sims = unit @ unit.T
        sims.fill_diagonal_(-2.0)
        self.nearest = sims.argmax(1).cpu().numpy()

    def next(self) -> np.ndarray:
        count = len(self.by_class)
        seeds = self.rng.choice(count, self.classes // 2, replace=False)
        partners = self.nearest[seeds].tolist() if self.nearest is not None else []
        chosen = list(dict.fromkeys(seeds.tolist() + partners))
        if self.favoured and self.rng.random() < 0.5:
            chosen = list(dict.fromkeys([int(self.rng.choice(self.favoured))] + chosen))
        while len(chosen) < self.classes:
            chosen = list(dict.fromkeys(chosen + [int(self.rng.integers(count))]))
        return np.concatenate([self.rng.choice(self.by_class[c], self.per_class, replace=False)
                               for c in chosen[: self.classes]])


SHAPE_SOURCES = ("simple-icons", "generated marks", "real photo crops")  # brands: one mark in any colourway


def training_data(spec: EmbedderSpec, net: EmbeddingNet, args: argparse.Namespace
                  ) -> tuple[LogoViews, tuple[int, ...], dict[str, LogoViews], dict[str, int], np.ndarray]:
    """The training crops, the real-photo classes among them, the validation sets, class counts per source, and
    which classes are brands (:data:`SHAPE_SOURCES`, reprinted in other colourways with ``--colourways``)."""
    transform, size = serving_transform(spec, net)
    grey = spec.grayscale
    render = dict(transform=transform, size=size, grey=grey, cache=args.cache, workers=args.workers)
    icons = load_icons(fetch_simple_icons(args.cache))
    sources = {"simple-icons": make_views([i for i in icons if split_of(i.slug) == "train"][: args.max_classes or None],
                                          args.views, seed=args.seed, **render)}
    val = {"simple-icons": make_views([i for i in icons if split_of(i.slug) == "val"][:200], 5, seed=args.seed + 1,
                                      **render)}
    if args.colourways and not grey:
        val["simple-icons colourways"] = colourway_queries(val["simple-icons"], gallery=3)
    if not grey:
        graphics = load_colour_graphics(args.cache, args.colour_per_set)
        sources["colour graphics"] = make_views([g for g in graphics if split_of(g.slug) == "train"],
                                                args.colour_views, seed=args.seed, **render)
        val["colour graphics"] = make_views([g for g in graphics if split_of(g.slug) == "val"][:200], 5,
                                            seed=args.seed + 1, **render)
        glyphs = [i for i in icons if split_of(i.slug) == "train"]
        fonts = FONTS + (use_fonts(args.cache) if args.fonts else ())
        sources["generated marks"] = make_views([generated_mark(n, glyphs, fonts) for n in range(args.marks)],
                                                args.colour_views, seed=args.seed, **render)
    if args.real:
        sources["real photo crops"], _ = real_crop_views(args.real, "train", args.real_views, transform, size, grey,
                                                         args.seed, args.cache)
    images, labels, favoured, counts, offset, shape = [], [], (), {}, 0, []
    for name, views in sources.items():
        images.append(np.asarray(views.images))
        labels.append(views.labels + offset)
        counts[name] = int(views.labels.max()) + 1
        shape += [name in SHAPE_SOURCES] * counts[name]
        if name == "real photo crops":
            favoured = tuple(range(offset, offset + counts[name]))
        offset += counts[name]
    data = LogoViews(np.concatenate(images), np.concatenate(labels))
    log.info("training classes per source: %s; %d crops", counts, len(data.labels))
    return data, favoured, val, counts, np.array(shape)


def schedule_progress(step: int, elapsed: float, steps: int, budget: float) -> float:
    """How far a run is through its schedule (1: done): by steps when it has a step budget, else by time.

    Example:
        >>> schedule_progress(50, 9999.0, steps=100, budget=60.0), schedule_progress(50, 30.0, steps=0, budget=60.0)
        (0.5, 0.5)
    """
    return step / steps if steps else elapsed / budget


def lr_factor(progress: float) -> float:
    """The learning rate's share of its peak: a linear warm-up over the first 5 %, then a cosine to 0.

    Example:
        >>> round(lr_factor(0.025), 3), lr_factor(0.05), round(lr_factor(1.0), 6)
        (0.5, 1.0, 0.0)
    """
    return progress / 0.05 if progress < 0.05 else 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95))


def class_means(net: EmbeddingNet, data: LogoViews, views: int = 2) -> torch.Tensor:
    """Each class's mean embedding of its first ``views`` crops, unit length: [C, D].

    ArcFace centres start here when the network starts from trained weights. Random
    centres would send large, meaningless gradients into a backbone that already
    embeds logos well, undoing much of it before the centres catch up (the validation
    dip of the first few hundred steps of a run from random centres).
    """
    classes = int(data.labels.max()) + 1
    first = np.concatenate([np.flatnonzero(data.labels == c)[:views] for c in range(classes)])
    vectors = embed_views(net, data.images[first])
    sums = torch.zeros(classes, vectors.shape[1]).index_add_(0, torch.as_tensor(data.labels[first]), vectors)
    return torch.nn.functional.normalize(sums, dim=1)


def colourway_queries(views: LogoViews, gallery: int) -> LogoViews:
    """``views`` with every query crop (a class's views after its first ``gallery``) in another colourway,
    the same for every run: the gallery in one print, the queries in others, as on real packaging."""
    images = np.array(views.images)
    order = np.concatenate([np.arange((views.labels == c).sum()) for c in np.unique(views.labels)])
    queries = np.flatnonzero(order >= gallery)
    ways = torch.full((len(images),), -1)
    ways[queries] = torch.as_tensor(queries % len(COLOURWAYS))
    batch = recolour(_to_batch(images), ways, torch.Generator().manual_seed(0))
    return LogoViews(np.round((batch.numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8), views.labels)


def validate(net: EmbeddingNet, val: dict[str, LogoViews]) -> dict[str, float]:
    """Nearest-neighbour top-1 and recall@5 on each validation set, and their mean top-1 (which picks checkpoints)."""
    figures: dict[str, float] = {}
    for name, views in val.items():
        for key, value in retrieval_figures(embed_views(net, views.images), views.labels, gallery=3).items():
            figures[f"{name} {key}"] = round(float(value), 4)
    figures["nn_top1"] = round(float(np.mean([v for k, v in figures.items() if k.endswith("nn_top1")])), 4)
    return figures


def train(args: argparse.Namespace) -> dict[str, object]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    from pytorch_metric_learning import losses, miners

    spec = get_spec(args.embedder)
    net = build_net(spec, trained=False).to(memory_format=torch.channels_last)
    if args.init:
        load_trained_weights(net, args.init)
        log.info("network initialised from %s", args.init)
    data, favoured, val, counts, shape_classes = training_data(spec, net, args)
    classes = int(data.labels.max()) + 1

    device = torch.device(training_device(args.device))  # after the data: its render workers fork CUDA-free
    teacher = copy.deepcopy(net).eval().requires_grad_(False).to(device) if args.distil else None
    frozen = freeze_early_layers(net)
    net.to(device)
    loss_arc = losses.ArcFaceLoss(num_classes=classes, embedding_size=spec.head_dim, margin=28.6, scale=32)
    if args.init and not args.resume:
        with torch.no_grad():
            loss_arc.W.copy_(class_means(net, data).T)
    loss_arc.to(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights_file = out / (spec.weights.name if spec.weights else "logo-embedder.pt")
    history: list[dict[str, float]] = []
    step, spent, best = 0, 0.0, -1.0
    if args.resume:
        step, spent, best, history, steps = _resume(net, loss_arc, args.resume)
        args.steps = args.steps or steps  # a step-budgeted run resumes on its own schedule
    loss_pairs, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(epsilon=0.1)
    groups = [{"params": [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head.")],
               "lr": args.lr},
              {"params": net.head.parameters(), "lr": args.lr * 5},
              {"params": loss_arc.parameters(), "lr": args.lr * 50, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    colour_rng = torch.Generator().manual_seed(args.seed + step)
    sampler = LookAlikeBatches(data.labels, args.classes_per_batch, args.per_class, args.seed + step, favoured)
    # from --init weights the class centres are meaningful at once (class means), so look-alike batches are too
    lookalike_after = 0 if args.init else args.lookalike_after
    if step >= lookalike_after:
        sampler.update(loss_arc.W.T)

    budget = args.minutes * 60
    started = time.perf_counter() - spent  # a resumed run continues its schedule
    while (progress := schedule_progress(step, elapsed := time.perf_counter() - started, args.steps, budget)) < 1:
        factor = lr_factor(progress)
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * factor
        net.train()
        for module in frozen:
            module.eval()
        index = np.sort(sampler.next())
        batch = shift_and_scale(_to_batch(data.images[index], device), colour_rng)
        if args.colourways and not spec.grayscale:
            ways = torch.randint(len(COLOURWAYS), (len(index),), generator=colour_rng)
            reprint = torch.rand(len(index), generator=colour_rng) < args.colourways
            ways[~(reprint & torch.as_tensor(shape_classes[data.labels[index]]))] = -1
            batch = recolour(batch, ways, colour_rng)
        batch = batch.contiguous(memory_format=torch.channels_last)
        labels = torch.as_tensor(data.labels[index]).to(device)
        embeddings = net(batch)
        if teacher is not None:
            loss = (1 - (embeddings * two_view_targets(teacher, batch)).sum(dim=1)).mean()
        else:
            loss = loss_arc(embeddings, labels) + loss_pairs(embeddings, labels, miner(embeddings, labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 25 == 0 and step >= lookalike_after:
            sampler.update(loss_arc.W.T)
        if step % 20 == 0:
            log.info("step %d  %.0f s  loss %.3f  lr %.2e", step, elapsed, loss.item(), optimizer.param_groups[0]["lr"])
        if step % args.eval_every == 0:
            figures = validate(net, val)
            history.append({"step": step, "seconds": round(elapsed), "loss": round(loss.item(), 4), **figures})
            log.info("validation at step %d: %s", step, figures)
            if figures["nn_top1"] > best:
                best = figures["nn_top1"]
                _save(trained_state(net), weights_file)
            _save({"net": trained_state(net, half=False), "arc": loss_arc.state_dict(), "step": step,
                   "seconds": elapsed, "best": best, "history": json.dumps(history), "steps": args.steps},
                  out / "checkpoint.pt")
    figures = validate(net, val)
    history.append({"step": step, "seconds": round(time.perf_counter() - started), **figures})
    if figures["nn_top1"] >= best:
        best = figures["nn_top1"]
        _save(trained_state(net), weights_file)
    report = {"embedder": spec.name, "steps": step, "minutes": round((time.perf_counter() - started) / 60, 1),
              "classes": counts, "crops": len(data.labels), "batch": args.classes_per_batch * args.per_class,
              "threads": args.threads, "input_size": data.images.shape[-1], "best_val_nn_top1": best,
              "history": history, "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "training.json").write_text(json.dumps(report, indent=1))
    return report


def training_device(name: str) -> str:
    """The torch device a run trains on: ``name``, or with ``auto`` the GPU when there is one.

    Example:
        >>> training_device("cpu")
        'cpu'
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _resume(net: EmbeddingNet, loss: torch.nn.Module, path: Path
            ) -> tuple[int, float, float, list[dict[str, float]], int]:
    """Continue from a run's ``checkpoint.pt``: network, class centres, step, time spent, best score, history,
    and the run's step budget (0: it ran on ``--minutes``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "net" not in state:
        raise SystemExit(f"{path} is not a training checkpoint; start from shipped weights with --init")
    net.load_state_dict(state["net"], strict=False)
    loss.load_state_dict(state["arc"])
    log.info("resumed from %s (step %s, %.0f s)", path, state["step"], state["seconds"])
    return (int(state["step"]), float(state["seconds"]), float(state["best"]), json.loads(state["history"]),
            int(state.get("steps", 0)))


def _save(state: dict[str, object], path: Path) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedder", default=TRAINED_EMBEDDER, help="the registered spec to train")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--steps", type=int, default=0,
                        help="a budget in steps instead (the schedule then does not depend on how busy the cores are)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "embedder")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    parser.add_argument("--views", type=int, default=8, help="photographed crops per simple-icons logo")
    parser.add_argument("--colour-views", type=int, default=5, help="crops per colour graphic and generated mark")
    parser.add_argument("--colour-per-set", type=int, default=500, help="graphics kept per colour set (0: all)")
    parser.add_argument("--marks", type=int, default=1500, help="generated glyph-and-wordmark designs")
    parser.add_argument("--fonts", action="store_true",
                        help="set generated marks in the @fontsource faces too (pipeline/training/fonts.py; npm once)")
    parser.add_argument("--real", type=Path, help="a YOLO photo dataset whose train split's boxes are trained on")
    parser.add_argument("--real-views", type=int, default=2, help="crops per real box")
    parser.add_argument("--colourways", type=float, default=0.0,
                        help="share of brand crops reprinted in another colourway at each step (shape first; "
                             "colour specs only)")
    parser.add_argument("--max-classes", type=int, default=0, help="use only the first N simple-icons logos (0: all)")
    parser.add_argument("--classes-per-batch", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lookalike-after", type=int, default=150,
                        help="steps before look-alike batches start (from --init weights they start at once: the "
                             "class centres are meaningful from the first step)")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when there is one)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes rendering the data")
    parser.add_argument("--init", type=Path, help="shipped weights (a logo-embedder*.pt) to start from")
    parser.add_argument("--resume", type=Path, help="a run's checkpoint.pt to continue, schedule included")
    parser.add_argument("--distil", action="store_true",
                        help="instead of the metric losses, teach the one pass what two passes of the --init network "
                             "see (each crop in colour and in grey, the vectors summed): shape first at one pass's "
                             "cost")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.minutes <= 0 or args.steps < 0:
        parser.error("--minutes must be positive and --steps 0 (use --minutes) or more")
    if not 0.0 <= args.colourways <= 1.0:
        parser.error("--colourways is a share between 0 and 1")
    if args.distil and not args.init:
        parser.error("--distil needs --init, the teacher (with --resume as well)")
    if args.real and not args.real.is_dir():
        parser.error(f"--real {args.real}: no such dataset folder (real-drinks: see its README for the public source)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps({k: v for k, v in train(args).items() if k != "history"}))


if __name__ == "__main__":
    main()
