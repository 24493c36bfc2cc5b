"""Train the bundled logo detector and export it in the YOLOv8 ONNX layout.

    python -m pipeline.training.detector --minutes 50 --out assets/detector

The model is torchvision's FCOS (anchor-free one-stage detector: its head,
losses, box coder and post-processing) on a feature pyramid
(``torchvision.ops.FeaturePyramidNetwork``) over timm's
``tf_efficientnet_lite0`` stages at strides 8, 16 and 32, initialised from the
bundled ImageNet weights. It trains on product scenes generated on the fly by
:mod:`pipeline.training.scenes` from npm ``simple-icons`` logos, except the held-out
tenth (:func:`pipeline.training.synth.held_out`) that the benchmark uses, and with ``--real`` on the photos
of a detection dataset's ``train`` split (``--hold-out`` leaves some brands' photos out, to judge on them;
``--paste`` prints training logos onto a share of those photos).

The export wraps the trained model so that its ONNX graph has Open Food Facts'
universal-logo-detector layout: input ``images`` [1, 3, 640, 640] (RGB in
[0, 1], letterboxed), output ``output0`` [1, 4 + 1, 8400]: box centre x, y,
width and height in input pixels, then the logo score. One runner
(:class:`pipeline.detectors.OnnxDetector`) serves both.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork, box_convert

from pipeline.datasets import DatasetPhoto, load_yolo
from pipeline.training.scenes import paste_marks
from pipeline.training.synth import Icon, fetch_simple_icons, held_out, load_icons, logo_card
from pipeline.types import Box

log = logging.getLogger(__name__)

EXPORT_SIZE = 640
STRIDES = (8, 16, 32)
FPN_CHANNELS = 64


class LiteFPN(nn.Module):
    """EfficientNet-Lite0 stages 2-4 (strides 8/16/32) and a feature pyramid on top."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
        if pretrained:
            from pipeline.embedders import efficientnet_lite0_imagenet

            missing = self.body.load_state_dict(efficientnet_lite0_imagenet().state_dict(), strict=False).missing_keys
            if missing:
                raise RuntimeError(f"backbone weights missing: {missing[:5]}")
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), FPN_CHANNELS)
        self.out_channels = FPN_CHANNELS

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(images)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


def build_model(pretrained: bool = True, min_size: int = 384, max_size: int = 512) -> FCOS:
    """FCOS with one class ("logo"); inputs are RGB in [0, 1], normalised to [-1, 1] inside."""
    backbone = LiteFPN(pretrained)
    anchors = AnchorGenerator(sizes=tuple((s,) for s in STRIDES), aspect_ratios=((1.0,),) * len(STRIDES))
    head = FCOSHead(FPN_CHANNELS, num_anchors=1, num_classes=1, num_convs=3)
    return FCOS(backbone, num_classes=1, min_size=min_size, max_size=max_size, image_mean=[0.5] * 3,
                image_std=[0.5] * 3, anchor_generator=anchors, head=head, score_thresh=0.05, nms_thresh=0.5,
                detections_per_img=100)


class YoloLayout(nn.Module):
    """The trained FCOS as a YOLOv8-layout graph: [1, 3, S, S] in [0, 1] -> [1, 5, N] (cx, cy, w, h, score).

    Decoding uses FCOS's own anchor generator and box coder, and the score is
    FCOS's own ``sqrt(sigmoid(class) * sigmoid(centerness))``.
    """

    def __init__(self, model: FCOS, size: int = EXPORT_SIZE) -> None:
        super().__init__()
        self.backbone, self.head, self.box_coder = model.backbone, model.head, model.box_coder
        with torch.no_grad():
            dummy = torch.zeros(1, 3, size, size)
            features = list(self.backbone(dummy).values())
            anchors = model.anchor_generator(ImageList(dummy, [(size, size)]), features)[0]
        self.register_buffer("anchors", anchors)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = list(self.backbone((images - 0.5) / 0.5).values())
        out = self.head(features)
        boxes = self.box_coder.decode(out["bbox_regression"][0], self.anchors)
        scores = torch.sqrt(torch.sigmoid(out["cls_logits"][0]) * torch.sigmoid(out["bbox_ctrness"][0]))
        return torch.cat([box_convert(boxes, "xyxy", "cxcywh"), scores], dim=1).T.unsqueeze(0)


def export_onnx(model: FCOS, path: Path, size: int = EXPORT_SIZE) -> Path:
    """Write the YOLOv8-layout ONNX graph (input ``images``, output ``output0``) with class names in metadata."""
    import onnx

    wrapper = YoloLayout(model.eval(), size).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.onnx")
    torch.onnx.export(wrapper, torch.zeros(1, 3, size, size), str(partial), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
    graph = onnx.load(str(partial))
    graph.metadata_props.add(key="names", value=json.dumps({0: "logo"}))
    onnx.save(graph, str(partial))
    partial.replace(path)
    return path


class SceneStream(torch.utils.data.IterableDataset):
    """An endless stream of generated scenes with their logo boxes (training icons only)."""

    def __init__(self, icons: list[Icon], size: tuple[int, int], seed: int,
                 logo_fraction: tuple[float, float] = (0.06, 0.85)) -> None:
        self.icons, self.size, self.seed, self.logo_fraction = icons, size, seed, logo_fraction

    def __iter__(self):
        from torchvision.transforms.v2 import functional as F

        from pipeline.training.scenes import compose_scene

        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            picks = rng.choice(len(self.icons), int(rng.integers(0, 5)), replace=False)
            cards = [(logo_card(self.icons[i], rng, size=int(rng.integers(100, 260))), "logo") for i in picks]
            # mostly packaging-sized logos, sometimes a close-up that fills the frame
            fraction = self.logo_fraction if rng.random() < 0.25 else (self.logo_fraction[0], 0.4)
            scene = compose_scene(cards, rng, size=self.size, strength=float(rng.uniform(0.3, 1.0)),
                                  logo_fraction=fraction)
            boxes = torch.tensor([b.to_list() for b in scene.boxes], dtype=torch.float32).reshape(-1, 4)
            yield F.to_dtype(F.pil_to_tensor(scene.image), torch.float32, scale=True), {
                "boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.int64)}


class RealPhotoStream(torch.utils.data.IterableDataset):
    """An endless stream of a detection dataset's photos (e.g. the real-drinks train split) with their boxes.

    Each photo is zoomed in (an SSD-style IoU crop, so logos grow and edges of
    the frame go) or out (logos shrink on a wider canvas), then colour-jittered:
    real shelf photos vary in framing and light far more than 492 photos show.

    With ``icons`` and ``paste`` > 0, that share of the photos first gets one to four of those logos printed
    on it (:func:`pipeline.training.scenes.paste_marks`): the real scenes then show many marks, not five brands.
    """

    def __init__(self, photos: list[DatasetPhoto], seed: int, max_side: int = 1024,
                 icons: Sequence[Icon] = (), paste: float = 0.0) -> None:
        self.photos, self.seed, self.max_side = photos, seed, max_side
        self.icons, self.paste = list(icons), paste if icons else 0.0

    def __iter__(self):
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 1000 + (info.id if info else 0)])
        torch.manual_seed(int(rng.integers(2**31)))
        zoom = v2.RandomChoice([v2.RandomIoUCrop(), v2.RandomZoomOut(fill=127, side_range=(1.0, 2.5)),
                                v2.Identity()], p=[0.4, 0.25, 0.35])
        transform = v2.Compose([zoom, v2.RandomPhotometricDistort(p=0.8), v2.ToDtype(torch.float32, scale=True),
                                v2.SanitizeBoundingBoxes(min_size=4)])
        while True:
            photo = self.photos[int(rng.integers(len(self.photos)))]
            image = Image.open(photo.path).convert("RGB")
            image.thumbnail((self.max_side, self.max_side))
            scale = image.width / photo.width
            found = [Box(*(v * scale for v in a.box.to_list())) for a in photo.annotations]
            if rng.random() < self.paste:
                image, found = paste_marks(image, found, [self._mark(rng) for _ in range(int(rng.integers(1, 5)))],
                                           rng)
            boxes = tv_tensors.BoundingBoxes([b.to_list() for b in found], format="XYXY",
                                             canvas_size=(image.height, image.width))
            picture, target = transform(tv_tensors.Image(v2.functional.pil_to_tensor(image)),
                                        {"boxes": boxes, "labels": torch.zeros(len(boxes), dtype=torch.int64)})
            yield picture.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor),
                                                      "labels": target["labels"]}

    def _mark(self, rng: np.random.Generator) -> Image.Image:
        """A logo as printed straight on the surface (ink only, in a packaging colour scheme) or on a label."""
        icon = self.icons[int(rng.integers(len(self.icons)))]
        size = int(rng.integers(100, 260))
        if rng.random() < 0.6:
            card = logo_card(icon, rng, size=size)
            inked = card.convert("RGBA")
            bright = np.asarray(card.convert("L"), dtype=np.int16)
            paper = int(np.median(np.r_[bright[0], bright[-1], bright[:, 0], bright[:, -1]]))
            inked.putalpha(Image.fromarray((np.abs(bright - paper) > 24).astype(np.uint8) * 255))
            return inked
        return logo_card(icon, rng, size=size).convert("RGBA")


class Mixed(torch.utils.data.IterableDataset):
    """Each sample drawn from one of ``streams`` with the given probabilities."""

    def __init__(self, streams: list[torch.utils.data.IterableDataset], weights: list[float], seed: int) -> None:
        self.streams, self.seed = streams, seed
        self.share = np.asarray(weights, dtype=float) / sum(weights)

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        iterators = [iter(stream) for stream in self.streams]
        while True:
            yield next(iterators[int(rng.choice(len(iterators), p=self.share))])


def freeze_early_backbone(model: FCOS) -> None:
    """Keep the stem and the first two stages as ImageNet made them, and every backbone BatchNorm's statistics.

    Small batches make poor BatchNorm statistics, and edges and colours are
    already well learnt; this also spares a third of the backward pass on a CPU.
    """
    body = model.backbone.body
    for module in [body.conv_stem, body.bn1, body.blocks[0], body.blocks[1]]:
        module.requires_grad_(False)
    for module in body.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def training_photos(real: Path, hold_out: Sequence[str] = ()) -> list[DatasetPhoto]:
    """The photos of a YOLO dataset's ``train`` split that have boxes, less every photo that shows a ``hold_out``
    brand anywhere (brand-held-out: a benchmark then judges the model on those brands' ``test`` photos).

    Raises:
        ValueError: a ``hold_out`` name is not one of the dataset's classes (a typo would hold out nothing).
    """
    dataset = load_yolo(real, skip_empty_boxes=True)
    unknown = set(hold_out) - set(dataset.classes)
    if unknown:
        raise ValueError(f"hold-out brands {sorted(unknown)} are not classes of {real} ({', '.join(dataset.classes)})")
    return [photo for photo in dataset.split("train").showing(hold_out, only=False).photos if photo.annotations]


def train(out: Path, minutes: float, batch_size: int = 8, size: tuple[int, int] = (448, 336), lr: float = 1e-3,
          seed: int = 0, cache_dir: Path = Path(".cache"), resume: Path | None = None, real: Path | None = None,
          real_share: float = 0.5, checkpoint_minutes: float = 5.0, hold_out: Sequence[str] = (),
          paste: float = 0.0, steps: int | None = None) -> dict[str, object]:
    """Train for ``minutes`` of wall time (or ``steps``), then export; returns the training record (also saved as JSON).

    Args:
        real: A YOLO-layout dataset of real photos (e.g. real-drinks); only its
            ``train`` split is used (:func:`pipeline.datasets.real_drinks_split`),
            mixed with generated scenes at ``real_share``.
        hold_out: Brands (``real``'s class names) whose photos are left out of training whole, so that a
            benchmark can judge the model on brands it never saw (``benchmarks/detector.py --hold-out``).
        paste: Share of the real photos that get training logos printed on them (:class:`RealPhotoStream`).
        steps: Train this many steps, the learning rate's schedule following them, whatever the wall time: two
            runs on a machine shared with other work then differ only by their recipe.
        resume: Continue from a saved ``logo-detector.pt`` (a new warm-up and cosine decay).
        checkpoint_minutes: How often ``out/logo-detector.pt`` is saved, so a
            killed run resumes from where it was.
    """
    torch.manual_seed(seed)
    icons = [icon for icon in load_icons(fetch_simple_icons(cache_dir)) if not held_out(icon.slug)]
    stream: torch.utils.data.IterableDataset = SceneStream(icons, size, seed)
    real_photos: list[DatasetPhoto] = []
    if real is not None:
        real_photos = training_photos(real, hold_out)
        stream = Mixed([stream, RealPhotoStream(real_photos, seed, icons=icons, paste=paste)],
                       [1 - real_share, real_share], seed)
    loader = torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=1,
                                         collate_fn=lambda batch: tuple(zip(*batch, strict=True)))
    model = build_model(pretrained=resume is None, min_size=min(size), max_size=max(size))
    if resume is not None:
        model.load_state_dict(torch.load(resume, map_location="cpu"))
    model.train()
    freeze_early_backbone(model)
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.body") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.body")]
    optimiser = torch.optim.AdamW([{"params": backbone, "lr": lr * 0.3}, {"params": rest, "lr": lr}],
                                  weight_decay=1e-4)
    budget = minutes * 60
    started = time.perf_counter()
    step, history, saved = 0, [], started
    out.mkdir(parents=True, exist_ok=True)
    for images, targets in loader:
        elapsed = time.perf_counter() - started
        if (step >= steps) if steps else (elapsed > budget):
            break
        progress = step / steps if steps else elapsed / budget  # warm-up, then cosine decay over the budget
        scale = min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * progress))
        for group, base in zip(optimiser.param_groups, (lr * 0.3, lr), strict=True):
            group["lr"] = base * max(scale, 0.02)
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        step += 1
        if step % 20 == 0:
            record = {"step": step, "minutes": round(elapsed / 60, 1), **{k: round(float(v), 4)
                                                                          for k, v in losses.items()}}
            history.append(record)
            log.info("%s", record)
        if time.perf_counter() - saved > checkpoint_minutes * 60:
            _save(model, out / "logo-detector.pt")
            saved = time.perf_counter()
    _save(model, out / "logo-detector.pt")
    export_onnx(model, out / "logo-detector.onnx")
    record = {"steps": step, "images": step * batch_size, "minutes": round((time.perf_counter() - started) / 60, 1),
              "batch_size": batch_size, "train_size": list(size), "lr": lr, "seed": seed,
              "training_icons": len(icons), "real_photos": len(real_photos), "real_share": real_share if real else 0,
              "pasted_share": paste if real else 0,
              "held_out_brands": sorted(hold_out),
              "resumed_from": str(resume) if resume else None, "history": history}
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _save(model: FCOS, path: Path) -> None:
    """Write the weights atomically: a kill mid-write leaves the previous checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(model.state_dict(), partial)
    partial.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("assets/detector"))
    parser.add_argument("--minutes", type=float, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--resume", type=Path, help="a logo-detector.pt to continue from")
    parser.add_argument("--real", type=Path, help="YOLO dataset of real photos to mix in (its train split), "
                                                  "e.g. ../shared/datasets/real-drinks")
    parser.add_argument("--real-share", type=float, default=0.5, help="share of real photos in each batch")
    parser.add_argument("--hold-out", default="", metavar="BRAND,BRAND",
                        help="leave the photos of these --real brands out (brand-held-out: judge on them after)")
    parser.add_argument("--size", type=int, nargs=2, default=(448, 336), metavar=("LONG", "SHORT"),
                        help="training input size (longest and shortest side)")
    parser.add_argument("--paste", type=float, default=0.0, metavar="SHARE",
                        help="share of the --real photos that get training logos printed on them")
    parser.add_argument("--steps", type=int, help="train this many steps, whatever the wall time (not --minutes)")
    args = parser.parse_args()
    if args.real is not None and not (args.real / "labels").is_dir():
        parser.error(f"--real {args.real}: no YOLO dataset there (the real-drinks photos come from the public "
                     "GitHub repository hxtruong6/brand-detection; see its README in ../shared/datasets/real-drinks)")
    if args.hold_out and args.real is None:
        parser.error("--hold-out names brands of --real: give the dataset too")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    record = train(args.out, args.minutes, args.batch_size, size=tuple(args.size), lr=args.lr, resume=args.resume,
                   real=args.real, real_share=args.real_share,
                   hold_out=tuple(b for b in args.hold_out.split(",") if b), paste=args.paste, steps=args.steps)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}))


if __name__ == "__main__":
    main()
