"""End-to-end on real photos: from a photo to named logos, through the CLI and the HTTP API as users use them.

    python benchmarks/real_photos.py --dataset ../shared/datasets/real-drinks [--detector-path M.onnx]
                                     [--threshold T] [--sheet extra-boxes.png] [--review pending.json]
                                     [--brands Lavie,VinhHao]

1. Gallery: the labelled boxes of the dataset's ``train`` split, imported into a
   fresh store with ``python -m pipeline import-dataset --split train
   --split-by real-drinks``, then ``python -m pipeline calibrate``.
2. Queries: every ``test``-split photo, sent to ``POST /api/v1/search`` of a
   running ``python app.py`` on that store (bundled detector unless told).
3. Scoring, per true box: *found* when a returned box overlaps it at IoU >= 0.5,
   *found and named* when that box also carries the true label. *Extra labelled
   boxes* are returned boxes with a label that overlap no true box at IoU 0.5.
   The dataset's boxes are partial (often only some of the logos on a shelf are
   boxed), so many of those are real logos, named right. ``real_drinks_reviewed.json``
   beside this script holds boxes of test photos that a person looked at, each
   with the brand whose logo it shows (null: none of the dataset's brands). An
   extra box is an *unboxed logo* when it overlaps (IoU >= 0.5) a reviewed box of
   the brand it is named, and *wrong* otherwise: reviewed as something else, or
   not reviewed at all (counted wrong until someone looks: ``--review`` lists
   those with a numbered contact sheet, to add to the file). *Of another brand*
   counts extras named with a brand boxed nowhere on the photo. Found and found
   and named are scored on the dataset's own boxes only.
4. The trade-off: over every threshold of the answers' probabilities (the confidence of
   a named box, the probability of an unknown box's best guess), the most true boxes
   found and named right by a cut whose named boxes are right 95 % (90 %) of the time,
   and the area under the risk-coverage curve of the found boxes (``benchmarks/risk_coverage.py``).
5. The same figures for the plain vote (``pipeline.knn``, the app's answer before a
   store is calibrated), from the neighbours each answer lists: what the calibrated
   confidence and its "unknown" change on the same boxes.

``--brands A,B`` scores only the test photos that show those brands: with ``--detector-path`` a detector
trained without their photos (``python -m pipeline.training.detector --hold-out A,B``), these are the figures of
a detector on brands it never saw, the store still holding their labelled logos (brand-held-out).

real-drinks: 739 photos of drinks packaging with logo boxes of 5 brands, from
the public GitHub repository hxtruong6/brand-detection (MIT); see its README in
``../shared/datasets/real-drinks`` for the split and the caveats.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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

from benchmarks.risk_coverage import aurc, cut_at  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.datasets import DatasetPhoto, load_yolo  # noqa: E402
from pipeline.knn import VoteConfig, predict_label  # noqa: E402
from pipeline.types import LabelSource, Neighbour  # noqa: E402

UNBOXED = ROOT / "benchmarks" / "real_drinks_reviewed.json"


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


@dataclass(frozen=True)
class Extra:
    """A returned box with a label that overlaps no box of the dataset."""

    photo: Path
    box: list[float]
    label: str
    by_app: bool  # the app's (calibrated) answer named it; else only the plain vote did
    verdict: str  # "logo": reviewed, a logo of that brand; "wrong": reviewed, not one; "unreviewed"


def load_reviewed(path: Path) -> dict[str, list[tuple[list[float], str | None]]]:
    """Reviewed boxes of test photos, by photo file name: ``(box, brand)``, brand None for "no logo of the
    dataset's brands" (see ``UNBOXED``)."""
    if not path.exists():
        return {}
    reviewed: dict[str, list[tuple[list[float], str | None]]] = {}
    for entry in json.loads(path.read_text())["boxes"]:
        reviewed.setdefault(entry["photo"], []).append((entry["box"], entry["label"]))
    return reviewed


def _verdict(box: list[float], label: str, reviewed: list[tuple[list[float], str | None]]) -> str:
    """What a review says of a box named ``label``: the reviewed box it overlaps most at IoU >= 0.5 decides."""
    if not reviewed:
        return "unreviewed"
    iou = box_iou(torch.tensor([box], dtype=torch.float32), torch.tensor([b for b, _ in reviewed],
                                                                         dtype=torch.float32))[0]
    best = int(iou.argmax())
    if float(iou[best]) < 0.5:
        return "unreviewed"
    return "logo" if reviewed[best][1] == label else "wrong"


def scored_photos(dataset: Path, brands: Sequence[str] = ()) -> tuple[DatasetPhoto, ...]:
    """The dataset's ``test`` photos; with ``brands``, only those that show one of them (brand-held-out)."""
    test = load_yolo(dataset, skip_empty_boxes=True).split("test")
    return (test.showing(brands) if brands else test).photos


def answers_of(dataset: Path, url: str, brands: Sequence[str] = ()) -> tuple[dict[str, list[dict]], list[float]]:
    """``POST /api/v1/search`` of every test photo (of ``brands``): its logos by photo file name, and the
    latencies."""
    answers, latencies = {}, []
    with httpx.Client(timeout=120) as client:
        for photo in scored_photos(dataset, brands):
            started = time.perf_counter()
            answer = client.post(url + "/api/v1/search", files={"file": (photo.path.name, photo.path.read_bytes(),
                                                                          "image/jpeg")})
            latencies.append(time.perf_counter() - started)
            answer.raise_for_status()
            answers[photo.path.name] = answer.json()["logos"]
    return answers, latencies


def score(dataset: Path, answers: dict[str, list[dict]], reviewed: dict[str, list[tuple[list[float], str | None]]],
          extras: list[Extra] | None = None, brands: Sequence[str] = ()) -> dict[str, float]:
    """The figures of the module docstring, on the test photos of ``brands`` (all when empty); ``extras`` (if
    given) receives every extra labelled box of the app's answers and of the plain vote."""
    photos = scored_photos(dataset, brands)
    settings = Settings.from_env()
    config = VoteConfig(settings.max_distance, settings.min_confidence, settings.machine_label_weight)
    count: Counter[str] = Counter()
    scores, right = [], []  # per found true box: the answer's probability (given or guessed), and whether it is right
    for photo in photos:
        logos = answers[photo.path.name]
        plain = [plain_vote(logo, config) for logo in logos]
        truth = torch.tensor([a.box.to_list() for a in photo.annotations], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.tensor([logo["box"] for logo in logos], dtype=torch.float32).reshape(-1, 4)
        iou = box_iou(truth, boxes) if len(boxes) and len(truth) else torch.zeros(len(truth), len(boxes))
        count["logos"] += len(truth)
        for t, annotation in enumerate(photo.annotations):
            hits = [i for i in range(len(logos)) if iou[t, i] >= 0.5]
            count["found"] += bool(hits)
            count["named"] += any(logos[i]["label"] == annotation.label for i in hits)
            count["plain_named"] += any(plain[i] == annotation.label for i in hits)
            if hits:
                best = logos[max(hits, key=lambda i: float(iou[t, i]))]
                guess = best.get("guess") or {}
                scores.append(best["confidence"] if best["label"] else guess.get("probability", 0.0))
                right.append((best["label"] or guess.get("label")) == annotation.label)
        brands = {a.label for a in photo.annotations}
        for i, logo in enumerate(logos):
            if len(truth) and float(iou[:, i].max()) >= 0.5:
                continue
            label = logo["label"] or plain[i]
            if label is None:
                continue
            verdict = _verdict(logo["box"], label, reviewed.get(photo.path.name, []))
            for prefix, given in (("", logo["label"]), ("plain_", plain[i])):
                if given is not None:
                    count[prefix + "extra"] += 1
                    count[prefix + "extra_other"] += given not in brands
                    count[prefix + "extra_" + verdict] += 1
            if extras is not None:
                extras.append(Extra(photo.path, logo["box"], label, logo["label"] is not None, verdict))
    n = len(photos)
    figures: dict[str, float] = {"photos": n, "logos": count["logos"], "found": count["found"] / count["logos"]}
    # the trade-off over every threshold of the answers' probabilities (a guess counts with its own): the most
    # true boxes found and named right at a cut whose named boxes are right 95 % (90 %) of the time
    for precision in (0.95, 0.90):
        cut = cut_at(scores, right, precision)
        figures[f"named_at_precision_{precision:.2f}"] = sum(
            r and s >= cut for s, r in zip(scores, right)) / count["logos"]
    figures["aurc_found"] = aurc(scores, right) if scores else float("nan")
    for prefix, key in (("", ""), ("plain_", "plain_vote_")):
        figures |= {
            f"{key}found_and_named": count[prefix + "named"] / count["logos"],
            f"{key}extra_labelled_per_photo": count[prefix + "extra"] / n,
            f"{key}extra_other_brand_per_photo": count[prefix + "extra_other"] / n,
            f"{key}extra_unboxed_logo_per_photo": count[prefix + "extra_logo"] / n,
            f"{key}extra_wrong_per_photo": (count[prefix + "extra_wrong"] + count[prefix + "extra_unreviewed"]) / n,
            f"{key}extra_unreviewed": count[prefix + "extra_unreviewed"],
        }
    return figures


def contact_sheet(extras: list[Extra], path: Path, size: int = 120, columns: int = 10, limit: int = 200,
                  numbered: bool = False) -> None:
    """Extra labelled boxes side by side, each captioned with its label, so that a person can see whether they
    are unboxed logos or wrong names. Caption colour: green a reviewed logo of that brand, red reviewed wrong,
    black not reviewed; ``numbered`` puts each box's index first (for ``--review``)."""
    from PIL import Image, ImageDraw, ImageOps

    shown = extras[:limit]
    rows = max(1, -(-len(shown) // columns))
    sheet = Image.new("RGB", (columns * size, rows * (size + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    colours = {"logo": "green", "wrong": "red", "unreviewed": "black"}
    for n, extra in enumerate(shown):
        with Image.open(extra.photo) as image:
            crop = ImageOps.contain(ImageOps.exif_transpose(image).convert("RGB").crop(tuple(extra.box)),
                                    (size, size))
        x, y = (n % columns) * size, (n // columns) * (size + 16)
        sheet.paste(crop, (x + (size - crop.width) // 2, y + (size - crop.height) // 2))
        caption = f"{n} {extra.label}" if numbered else extra.label
        draw.text((x + 2, y + size + 2), caption[:20], fill=colours[extra.verdict])
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "real-drinks")
    parser.add_argument("--detector-path", type=Path, help="another YOLOv8-layout ONNX detector")
    parser.add_argument("--threshold", type=float, help="detector threshold (default: the app's)")
    parser.add_argument("--sheet", type=Path, help="save a contact sheet of the app's extra labelled boxes")
    parser.add_argument("--reviewed", type=Path, default=UNBOXED,
                        help=f"reviewed boxes of the test photos (default {UNBOXED.relative_to(ROOT)})")
    parser.add_argument("--review", type=Path, metavar="PENDING.json",
                        help="list the extra labelled boxes nobody has reviewed, with a numbered sheet beside it")
    parser.add_argument("--save-answers", type=Path, help="keep the API's answers (JSON) to score them again")
    parser.add_argument("--answers", type=Path, help="score answers kept by --save-answers instead of running the app")
    parser.add_argument("--brands", default="", metavar="BRAND,BRAND",
                        help="score only the test photos showing these brands (with --detector-path a detector "
                             "trained without them: brand-held-out)")
    args = parser.parse_args()
    if not (args.dataset / "labels").is_dir():
        parser.error(f"{args.dataset}: no YOLO dataset there (real-drinks: ../shared/datasets/real-drinks; the "
                     "public original is GitHub hxtruong6/brand-detection)")
    brands = tuple(b for b in args.brands.split(",") if b)
    env = {}
    if args.detector_path:
        env["LOGOS_DETECTOR_PATH"] = str(args.detector_path.resolve())
    if args.threshold is not None:
        env["LOGOS_DETECTOR_THRESHOLD"] = str(args.threshold)
    calibration = None
    if args.answers:
        answers, latencies = json.loads(args.answers.read_text()), []
    else:
        with tempfile.TemporaryDirectory(prefix="real-photos-") as tmp:
            data = Path(tmp)
            imported = _cli(data, "import-dataset", str(args.dataset), "--format", "yolo", "--split", "train",
                            "--split-by", "real-drinks", "--skip-empty-boxes")
            calibration = _cli(data, "calibrate")
            process, url = _serve(data, env)
            try:
                answers, latencies = answers_of(args.dataset, url, brands)
            finally:
                process.terminate()
                process.wait(timeout=60)
        if args.save_answers:
            args.save_answers.write_text(json.dumps(answers))
    extras: list[Extra] = []
    figures = score(args.dataset, answers, load_reviewed(args.reviewed), extras, brands)
    if latencies:
        figures["search_p50_ms"] = 1000 * sorted(latencies)[len(latencies) // 2]
    if args.sheet:
        shown = [extra for extra in extras if extra.by_app]
        contact_sheet(shown, args.sheet)
        print(f"{len(shown)} extra labelled boxes in the app's answers; the first {min(len(shown), 200)} in "
              f"{args.sheet}")
    if args.review:
        pending = [extra for extra in extras if extra.verdict == "unreviewed"]
        args.review.write_text(json.dumps({"boxes": [{"n": n, "photo": e.photo.name, "box": e.box, "label": e.label}
                                                     for n, e in enumerate(pending)]}, indent=1))
        contact_sheet(pending, args.review.with_suffix(".jpg"), numbered=True, limit=len(pending))
        print(f"{len(pending)} extra labelled boxes nobody has reviewed: {args.review} and "
              f"{args.review.with_suffix('.jpg')}")
    if calibration:
        print(f"gallery: {imported['added']} logos of the train split; calibration: {calibration}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))

if __name__ == "__main__":
    main()
