"""Train the bundled logo embedder: EfficientNet-Lite0 fine-tuned for logo retrieval.

    python -m pipeline.training.embedder --minutes 45 --out assets/embedder

Data: every simple-icons logo of the ``train`` split (:func:`pipeline.training.synth.split_of`;
the ``test`` split, which the retrieval benchmark uses, is never seen), each
rendered in ``--views`` independent colour schemes and "photographed" by
:func:`pipeline.training.synth.photograph` (rotation, perspective, colour shifts, blur,
noise, JPEG, occlusion, clutter). Crops are preprocessed exactly as the
embedder preprocesses them when serving (grey, autocontrast, resized to fit
the input and padded) and cached as uint8 under ``.cache/``.

Model: the registered spec :data:`pipeline.embedders.TRAINED_EMBEDDER`: the
bundled ImageNet weights, stem and first three blocks frozen, the later blocks
fine-tuned, GeM of the last two stages, then a linear head to 256-d.

Loss (pytorch-metric-learning): ArcFace over every training logo (each logo's
class centre competes with all others, so the nearest look-alikes dominate)
plus a Multi-Similarity loss on the hard pairs its miner finds in each batch.
Batches are built around look-alikes: half the logos of a batch are drawn at
random and each brings the logo whose ArcFace centre is nearest to its own.
The ``val`` split picks the checkpoint; the learning rate follows a
time-based warm-up and cosine so a run fits a wall-clock budget.
"""

from __future__ import annotations

import argparse
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

from pipeline.embedders import (TRAINED_EMBEDDER, EmbeddingNet, build_net, crop_transform, data_config_of, get_spec,
                                 load_trained_weights, prepare_crop)
from pipeline.training.metrics import retrieval_figures
from pipeline.training.synth import Icon, fetch_simple_icons, load_icons, logo_card, photograph, split_of

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FROZEN_BLOCKS = 3  # stem + blocks 0-2 (strides 2-8) keep their ImageNet weights
DATA_VERSION = 1


@dataclass
class LogoViews:
    """Preprocessed crops ``images`` [N, S, S] uint8 (grey) and their class ``labels`` [N]."""

    images: np.ndarray
    labels: np.ndarray


def grey_input(image: Image.Image, transform: Callable[[Image.Image], torch.Tensor]) -> np.ndarray:
    """The crop as the embedder feeds it (its own grey preparation and ``transform``), back in uint8."""
    tensor = transform(prepare_crop(image, grayscale=True))[0]
    return np.round((tensor.numpy() * 0.5 + 0.5) * 255).astype(np.uint8)


def _render(job: tuple[Icon, int, int, Callable[[Image.Image], torch.Tensor]]) -> np.ndarray:
    icon, views, seed, transform = job
    torch.set_num_threads(1)
    rng = np.random.default_rng([seed, zlib.crc32(icon.slug.encode())])
    return np.stack([grey_input(photograph(logo_card(icon, rng), rng), transform) for _ in range(views)])


def serving_transform(net: EmbeddingNet) -> tuple[Callable[[Image.Image], torch.Tensor], int]:
    """The trained embedder's own serving transform and its input side, so training sees what serving sees."""
    spec = get_spec(TRAINED_EMBEDDER)
    data_config = data_config_of(spec, net)
    return crop_transform(data_config, spec.crop_mode), data_config["input_size"][-1]


def make_views(icons: list[Icon], views: int, transform: Callable[[Image.Image], torch.Tensor], size: int,
               seed: int, cache: Path, workers: int) -> LogoViews:
    """``views`` photographed crops per icon (``transform`` makes them ``size`` px), cached on disk."""
    key = zlib.crc32(json.dumps([DATA_VERSION, [i.slug for i in icons], views, size, seed]).encode())
    path = cache / f"embedder-views-{key:08x}.npy"
    labels = np.repeat(np.arange(len(icons)), views)
    if path.exists():
        return LogoViews(np.load(path, mmap_mode="r"), labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.empty((len(icons) * views, size, size), np.uint8)
    started = time.perf_counter()
    jobs = [(icon, views, seed, transform) for icon in icons]
    with ProcessPoolExecutor(workers) as pool:
        for n, block in enumerate(pool.map(_render, jobs, chunksize=8)):
            images[n * views:(n + 1) * views] = block
            if n % 200 == 0:
                log.info("rendered %d/%d logos (%.0f s)", n, len(icons), time.perf_counter() - started)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, images)
    partial.replace(path)
    return LogoViews(images, labels)


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
    return {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in net.state_dict().items()
            if k.startswith(prefixes)}


def _to_batch(images: np.ndarray) -> torch.Tensor:
    grey = torch.from_numpy(np.array(images, dtype=np.float32)).div_(127.5).sub_(1.0)
    return grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def embed_views(net: EmbeddingNet, images: np.ndarray, batch: int = 128) -> torch.Tensor:
    net.eval()
    return torch.cat([net(_to_batch(images[i:i + batch])) for i in range(0, len(images), batch)])


class LookAlikeBatches:
    """Batches of ``classes`` logos x ``per_class`` views, half the logos paired with a look-alike."""

    def __init__(self, labels: np.ndarray, classes: int, per_class: int, seed: int) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        self.classes, self.per_class = classes, per_class
        self.rng = np.random.default_rng(seed)
        self.nearest: np.ndarray | None = None

    def update(self, centres: torch.Tensor) -> None:
        """Look-alikes from the loss's class centres [C, D]: each class's nearest other class."""
        unit = torch.nn.functional.normalize(centres.detach().float(), dim=1)
        sims = unit @ unit.T
        sims.fill_diagonal_(-2.0)
        self.nearest = sims.argmax(1).numpy()

    def next(self) -> np.ndarray:
        count = len(self.by_class)
        seeds = self.rng.choice(count, self.classes // 2, replace=False)
        chosen = list(dict.fromkeys(seeds.tolist() + (self.nearest[seeds].tolist() if self.nearest is not None else [])))
        while len(chosen) < self.classes:
            chosen = list(dict.fromkeys(chosen + [int(self.rng.integers(count))]))
        return np.concatenate([self.rng.choice(self.by_class[c], self.per_class, replace=False)
                               for c in chosen[: self.classes]])


def train(args: argparse.Namespace) -> dict[str, object]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    from pytorch_metric_learning import losses, miners

    spec = get_spec(TRAINED_EMBEDDER)
    net = build_net(spec, trained=False).to(memory_format=torch.channels_last)
    transform, size = serving_transform(net)
    icons = load_icons(fetch_simple_icons(args.cache))
    train_icons = [i for i in icons if split_of(i.slug) == "train"][: args.max_classes or None]
    val_icons = [i for i in icons if split_of(i.slug) == "val"][:200]
    log.info("%d training logos x %d views, %d validation logos", len(train_icons), args.views, len(val_icons))
    data = make_views(train_icons, args.views, transform, size, args.seed, args.cache, args.workers)
    val = make_views(val_icons, 5, transform, size, args.seed + 1, args.cache, args.workers)
    log.info("data ready: %s train crops, %s validation crops", len(data.labels), len(val.labels))

    frozen = freeze_early_layers(net)
    loss_arc = losses.ArcFaceLoss(num_classes=len(train_icons), embedding_size=spec.head_dim, margin=28.6,
                                  scale=32)
    if args.resume:
        _resume(net, loss_arc, args.resume)
    loss_pairs, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(epsilon=0.1)
    groups = [{"params": [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head.")],
               "lr": args.lr},
              {"params": net.head.parameters(), "lr": args.lr * 5},
              {"params": loss_arc.parameters(), "lr": args.lr * 50, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    augment = v2.RandomAffine(degrees=0, translate=(0.06, 0.06), scale=(0.85, 1.1))
    sampler = LookAlikeBatches(data.labels, args.classes_per_batch, args.per_class, args.seed)

    budget = args.minutes * 60
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    best = -1.0
    step = 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    while (elapsed := time.perf_counter() - started) < budget:
        progress = elapsed / budget
        factor = progress / 0.05 if progress < 0.05 else 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95))
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * factor
        net.train()
        for module in frozen:
            module.eval()
        index = np.sort(sampler.next())
        batch = torch.stack([augment(x) for x in _to_batch(data.images[index])])
        batch = batch.contiguous(memory_format=torch.channels_last)
        labels = torch.as_tensor(data.labels[index])
        embeddings = net(batch)
        loss = loss_arc(embeddings, labels) + loss_pairs(embeddings, labels, miner(embeddings, labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 25 == 0 and step >= args.lookalike_after:
            sampler.update(loss_arc.W.T)
        if step % 20 == 0:
            log.info("step %d  %.0f s  loss %.3f  lr %.2e", step, elapsed, loss.item(), optimizer.param_groups[0]["lr"])
        if step % args.eval_every == 0:
            figures = retrieval_figures(embed_views(net, val.images), val.labels, gallery=3)
            history.append({"step": step, "seconds": round(elapsed), "loss": round(loss.item(), 4), **figures})
            log.info("validation at step %d: %s", step, figures)
            _save({"net": trained_state(net, half=False), "arc": loss_arc.state_dict(), "step": step},
                  out / "checkpoint.pt")
            if figures["nn_top1"] > best:
                best = figures["nn_top1"]
                _save(trained_state(net), out / "logo-embedder.pt")
    figures = retrieval_figures(embed_views(net, val.images), val.labels, gallery=3)
    history.append({"step": step, "seconds": round(time.perf_counter() - started), **figures})
    if figures["nn_top1"] >= best:
        _save(trained_state(net), out / "logo-embedder.pt")
    report = {"embedder": TRAINED_EMBEDDER, "steps": step, "minutes": round((time.perf_counter() - started) / 60, 1),
              "train_logos": len(train_icons), "views_per_logo": args.views, "val_logos": len(val_icons),
              "batch": args.classes_per_batch * args.per_class, "threads": args.threads,
              "input_size": size, "best_val_nn_top1": max(best, figures["nn_top1"]), "history": history,
              "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "training.json").write_text(json.dumps(report, indent=1))
    return report


def _resume(net: EmbeddingNet, loss: torch.nn.Module, path: Path) -> None:
    """Continue from a run's ``checkpoint.pt`` (network and class centres) or a shipped weights file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "net" in state:
        net.load_state_dict(state["net"], strict=False)
        loss.load_state_dict(state["arc"])
        log.info("resumed from %s (step %s)", path, state.get("step"))
    else:
        load_trained_weights(net, path)
        log.info("resumed the network from %s; class centres start afresh", path)


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock training budget")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "embedder")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    parser.add_argument("--views", type=int, default=12, help="photographed crops per training logo")
    parser.add_argument("--max-classes", type=int, default=0, help="use only the first N training logos (0: all)")
    parser.add_argument("--classes-per-batch", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lookalike-after", type=int, default=150, help="steps before look-alike batches start")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes rendering the data")
    parser.add_argument("--resume", type=Path, help="a run's checkpoint.pt, or a logo-embedder.pt, to continue from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps({k: v for k, v in train(args).items() if k != "history"}))


if __name__ == "__main__":
    main()
