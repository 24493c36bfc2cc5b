"""Test-time choices for an embedder: flip averaging, multi-scale, crop padding. Kept only where they win.

    python benchmarks/embedder_tta.py [--embedder efficientnet-lite0-logo]

Two sets, both of held-out (``test`` split) logos that no model trained on:

* the retrieval set (benchmarks/make_retrieval_set.py): photographed crops,
  3 gallery and 2 queries per logo; variants: plain, flip-averaged, multi-scale;
* logos cut from generated product photos (the detector benchmark's scenes)
  with their box padded by 0-25 %, searched against 3 photographed crops of
  each logo: how much context around a box helps (``LOGOS_CROP_PADDING``).

Prints nearest-neighbour top-1 and recall@5 per variant, and the cost factor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.detector import held_out_scenes  # noqa: E402
from benchmarks.make_retrieval_set import ROOT, generate  # noqa: E402
from pipeline.training.metrics import retrieval_figures  # noqa: E402
from pipeline.embedders import Embedder, create_embedder, crop_transform, prepare_crop  # noqa: E402
from pipeline.images import crop  # noqa: E402
from pipeline.importing import labelled_files  # noqa: E402
from pipeline.training.synth import fetch_simple_icons, held_out, load_icons, logo_card, photograph  # noqa: E402


def embed_variant(embedder: Embedder, images: Sequence[Image.Image], sizes: Sequence[int],
                  flip: bool) -> torch.Tensor:
    """Average of the unit vectors over input sizes (and mirror images), renormalised."""
    prepared = [prepare_crop(im, embedder.grayscale) for im in images]
    total = None
    for size in sizes:
        transform = crop_transform(embedder.data_config, embedder.crop_mode, size)
        batch = torch.stack([transform(im) for im in prepared])
        views = [batch, batch.flip(-1)] if flip else [batch]
        with torch.inference_mode():
            for view in views:
                vectors = torch.cat([embedder.net(view[i:i + 64].contiguous(memory_format=torch.channels_last))
                                     for i in range(0, len(view), 64)])
                total = vectors if total is None else total + vectors
    return F.normalize(total, dim=1)


def _figures(vectors: torch.Tensor, labels: np.ndarray, gallery: int) -> str:
    figures = retrieval_figures(vectors, labels, gallery)
    return f"{figures['nn_top1']:>8.3f} {figures['recall@5']:>9.3f}"


def retrieval_set(embedder: Embedder, size: int) -> None:
    data = generate(ROOT / "benchmarks" / "out" / "retrieval", 200, 3, 2, 0, ROOT / ".cache")
    images, labels = [], []
    names = sorted({label for _, label in labelled_files(data / "gallery")})
    for n, name in enumerate(names):
        for split in ("gallery", "query"):
            for path in sorted((data / split / name).iterdir()):
                images.append(Image.open(path).convert("RGB"))
                labels.append(n)
    labels_arr = np.array(labels)
    variants: dict[str, tuple[Sequence[int], bool]] = {
        "plain": ((size,), False),
        "flip-averaged": ((size,), True),
        f"multi-scale {int(size * 0.8)}+{size}+{int(size * 1.2)}": ((int(size * 0.8), size, int(size * 1.2)), False),
        f"multi-scale {size}+{int(size * 1.4)}": ((size, int(size * 1.4)), False),
    }
    print(f"\nretrieval set: {len(names)} held-out logos, 3 gallery + 2 queries each")
    print(f"{'variant':<28} {'nn_top1':>8} {'recall@5':>9} {'cost':>5}")
    for name, (sizes, flip) in variants.items():
        cost = sum((s / size) ** 2 for s in sizes) * (2 if flip else 1)
        print(f"{name:<28} {_figures(embed_variant(embedder, images, sizes, flip), labels_arr, 3)} {cost:>5.1f}")


def scene_crops(embedder: Embedder, size: int, count: int) -> None:
    scenes = [s for s in held_out_scenes(count, seed=4242) if s.boxes]
    titles = sorted({label for scene in scenes for label in scene.labels})
    icons = {icon.title: icon for icon in load_icons(fetch_simple_icons(ROOT / ".cache")) if held_out(icon.slug)}
    rng = np.random.default_rng(7)
    gallery = [(photograph(logo_card(icons[t], rng), rng), n) for n, t in enumerate(titles) for _ in range(3)]
    plain: Callable[[Sequence[Image.Image]], torch.Tensor] = lambda ims: embed_variant(embedder, ims, (size,), False)  # noqa: E731
    gallery_vectors = plain([im for im, _ in gallery])
    gallery_labels = np.array([n for _, n in gallery])
    print(f"\nlogos cut from {len(scenes)} held-out product photos ({sum(len(s.boxes) for s in scenes)} logos,"
          f" {len(titles)} brands), against 3 photographed crops per brand")
    print(f"{'box padding':<28} {'nn_top1':>8} {'recall@5':>9}")
    for fraction in (0.0, 0.05, 0.15, 0.25):
        crops, labels = [], []
        for scene in scenes:
            for box, title in zip(scene.boxes, scene.labels, strict=True):
                crops.append(crop(scene.image, box, fraction))
                labels.append(titles.index(title))
        sims = plain(crops) @ gallery_vectors.T
        top = sims.topk(5, dim=1).indices.numpy()
        found = gallery_labels[top] == np.array(labels)[:, None]
        print(f"{f'{fraction:.0%}':<28} {found[:, 0].mean():>8.3f} {found.any(1).mean():>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedder", default="efficientnet-lite0-logo")
    parser.add_argument("--scenes", type=int, default=150)
    args = parser.parse_args()
    embedder = create_embedder(args.embedder, runtime="torch")
    size = embedder.data_config["input_size"][-1]
    print(f"embedder {args.embedder}, input {size} px")
    retrieval_set(embedder, size)
    scene_crops(embedder, size, args.scenes)


if __name__ == "__main__":
    main()
