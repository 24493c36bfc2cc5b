"""End-to-end on real photos: from a photo to named logos, through the CLI and the HTTP API as users use them.

    python benchmarks/real_photos.py --dataset ../shared/datasets/real-drinks [--detector-path M.onnx]
                                     [--threshold T] [--sheet extra-boxes.png]

1. Gallery: the labelled boxes of the dataset's ``train`` split, imported into a
   fresh store with ``python -m pipeline import-dataset --split train
   --split-by real-drinks``, then ``python -m pipeline calibrate``.
2. Queries: every ``test``-split photo, sent to ``POST /api/v1/search`` of a
   running ``python app.py`` on that store (bundled detector unless told).
3. Scoring, per true box: *found* when a returned box overlaps it at IoU >= 0.5,
   *found and named* when that box also carries the true label. *Extra labelled
   boxes* are returned boxes with a label that overlap no true box at IoU 0.5.
   The dataset's boxes are partial (often only some of the logos on a shelf are
   boxed), so many are real logos: *of another brand* counts those named with
   a brand that is boxed nowhere on the photo, which are mostly wrong names.
4. The same figures for the plain vote (``pipeline.knn``, the app's answer before a
   store is calibrated), from the neighbours each answer lists: what the calibrated
   confidence and its "unknown" change on the same boxes.

real-drinks: 739 photos of drinks packaging with logo boxes of 5 brands, from
the public GitHub repository hxtruong6/brand-detection (MIT); see its README in
``../shared/datasets/real-drinks`` for the split and the caveats.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx
import torch
from torchvision.ops import box_iou

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.datasets import load_yolo  # noqa: E402
from pipeline.knn import VoteConfig, predict_label  # noqa: E402
from pipeline.types import LabelSource, Neighbour  # noqa: E402


def plain_vote(logo: dict, config: VoteConfig) -> str | None:
    """The uncalibrated kNN label of one answered logo, from the neighbours it lists (all human-labelled here)."""
    neighbours = [Neighbour(n["id"], n["label"], LabelSource.HUMAN if n["label"] else None, n["distance"])
                  for n in logo["neighbours"]]
    return predict_label(neighbours, config).label


def _cli(data: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "--data-dir", str(data), *args], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"python -m pipeline {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _serve(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port),
                                    "LOGOS_DATA_DIR": str(data)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("app.py exited before answering /health") from None
            time.sleep(1)
    process.kill()
    raise SystemExit("app.py did not answer /health in 300 s")


def score(dataset: Path, url: str, extras: list[tuple[Path, list[float], str, bool]] | None = None
          ) -> dict[str, float]:
    """The figures of the module docstring; ``extras`` (if given) receives every extra labelled box
    as ``(photo, box, label, label boxed elsewhere on the photo)``."""
    photos = load_yolo(dataset, skip_empty_boxes=True).split("test").photos
    truth_boxes = found = named = extra = extra_other = named_plain = extra_plain = 0
    settings = Settings.from_env()
    config = VoteConfig(settings.max_distance, settings.min_confidence, settings.machine_label_weight)
    latencies = []
    with httpx.Client(timeout=120) as client:
        for photo in photos:
            started = time.perf_counter()
            answer = client.post(url + "/api/v1/search", files={"file": (photo.path.name, photo.path.read_bytes(),
                                                                          "image/jpeg")})
            latencies.append(time.perf_counter() - started)
            answer.raise_for_status()
            logos = answer.json()["logos"]
            plain = [plain_vote(logo, config) for logo in logos]
            truth = torch.tensor([a.box.to_list() for a in photo.annotations], dtype=torch.float32).reshape(-1, 4)
            boxes = torch.tensor([logo["box"] for logo in logos], dtype=torch.float32).reshape(-1, 4)
            iou = box_iou(truth, boxes) if len(boxes) and len(truth) else torch.zeros(len(truth), len(boxes))
            truth_boxes += len(truth)
            for t, annotation in enumerate(photo.annotations):
                hits = [i for i in range(len(logos)) if iou[t, i] >= 0.5]
                found += bool(hits)
                named += any(logos[i]["label"] == annotation.label for i in hits)
                named_plain += any(plain[i] == annotation.label for i in hits)
            brands = {a.label for a in photo.annotations}
            for i, logo in enumerate(logos):
                unmatched = not len(truth) or float(iou[:, i].max()) < 0.5
                extra_plain += unmatched and plain[i] is not None
                if logo["label"] is not None and unmatched:
                    extra += 1
                    extra_other += logo["label"] not in brands
                    if extras is not None:
                        extras.append((photo.path, logo["box"], logo["label"], logo["label"] in brands))
    latencies.sort()
    return {"photos": len(photos), "logos": truth_boxes, "found_and_named": named / truth_boxes,
            "found": found / truth_boxes, "extra_labelled_per_photo": extra / len(photos),
            "extra_other_brand_per_photo": extra_other / len(photos),
            "plain_vote_found_and_named": named_plain / truth_boxes,
            "plain_vote_extra_labelled_per_photo": extra_plain / len(photos),
            "search_p50_ms": 1000 * latencies[len(latencies) // 2]}


def contact_sheet(extras: list[tuple[Path, list[float], str, bool]], path: Path, size: int = 120,
                  columns: int = 10, limit: int = 100) -> None:
    """The extra labelled boxes side by side, each captioned with its label (red: a brand boxed nowhere on
    its photo), so that a person can see whether they are unboxed logos or wrong names."""
    from PIL import Image, ImageDraw, ImageOps

    shown = extras[:limit]
    rows = max(1, -(-len(shown) // columns))
    sheet = Image.new("RGB", (columns * size, rows * (size + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (photo, box, label, boxed) in enumerate(shown):
        with Image.open(photo) as image:
            crop = ImageOps.contain(ImageOps.exif_transpose(image).convert("RGB").crop(tuple(box)), (size, size))
        x, y = (n % columns) * size, (n // columns) * (size + 16)
        sheet.paste(crop, (x + (size - crop.width) // 2, y + (size - crop.height) // 2))
        draw.text((x + 2, y + size + 2), label[:18], fill="black" if boxed else "red")
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "real-drinks")
    parser.add_argument("--detector-path", type=Path, help="another YOLOv8-layout ONNX detector")
    parser.add_argument("--threshold", type=float, help="detector threshold (default: the app's)")
    parser.add_argument("--sheet", type=Path, help="save a contact sheet of the extra labelled boxes (PNG)")
    args = parser.parse_args()
    if not (args.dataset / "labels").is_dir():
        parser.error(f"{args.dataset}: no YOLO dataset there (real-drinks: ../shared/datasets/real-drinks; the "
                     "public original is GitHub hxtruong6/brand-detection)")
    env = {}
    if args.detector_path:
        env["LOGOS_DETECTOR_PATH"] = str(args.detector_path.resolve())
    if args.threshold is not None:
        env["LOGOS_DETECTOR_THRESHOLD"] = str(args.threshold)
    with tempfile.TemporaryDirectory(prefix="real-photos-") as tmp:
        data = Path(tmp)
        imported = _cli(data, "import-dataset", str(args.dataset), "--format", "yolo", "--split", "train",
                        "--split-by", "real-drinks", "--skip-empty-boxes")
        calibration = _cli(data, "calibrate")
        process, url = _serve(data, env)
        try:
            extras: list[tuple[Path, list[float], str, bool]] = []
            figures = score(args.dataset, url, extras)
        finally:
            process.terminate()
            process.wait(timeout=60)
    if args.sheet:
        contact_sheet(extras, args.sheet)
        print(f"{len(extras)} extra labelled boxes; the first {min(len(extras), 100)} in {args.sheet}")
    print(f"gallery: {imported['added']} logos of the train split; calibration: {calibration}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
