"""The default (full) demo store as a visitor gets it: its own leave-one-out accuracy, and the app's examples.

    python benchmarks/demo_store.py [--candidate WEIGHTS] [--json]

Builds the full demo store (every simple-icons brand in two colourways, brand colour on white and white on the
brand colour, plus the 43 bundled brands' cards and photographs: 7,106 logos) in a temporary folder, calibrates it
as the app does, and reports:

- its leave-one-out figures on its own labels (``python -m pipeline evaluate --store``: each logo named by the
  others): top-1, and how many labels score 0 (neither colourway of a mark finds the other; each with the labels
  given instead). Most of these
  brands are in the embedder's training collection: this is **fit**, not generalisation;
- the five nearest stored logos of the real Coca-Cola can of ``assets/examples/real-CocaCola-0003.jpg``;
- the placed example logos (``assets/examples/examples.json``) named right, and the real photos' answers.

``--candidate WEIGHTS`` runs it with a weights file of the default embedder's network (a training's output)
instead of the bundled one, so a candidate is judged before it replaces it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval import register_candidate  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.demo import EXAMPLE_PHOTOS, build_demo  # noqa: E402
from pipeline.embedders import TRAINED_EMBEDDER  # noqa: E402
from pipeline.service import LogoService  # noqa: E402
from pipeline.types import Box  # noqa: E402


def examples(service: LogoService) -> dict[str, object]:
    """Each placed example logo's answer (named, or the guess), and the real photos' given labels."""
    placed = json.loads((EXAMPLE_PHOTOS / "examples.json").read_text())
    answers = []
    for name, items in placed.items():
        logos = service.search.photo(EXAMPLE_PHOTOS / name).logos
        for item in items:
            found = max(logos, key=lambda logo: logo.box.iou(Box.from_sequence(item["box"])))
            hit = found.box.iou(Box.from_sequence(item["box"])) >= 0.5
            answers.append({"photo": name, "truth": item["label"], "found": hit,
                            "label": found.prediction.label if hit else None,
                            "guess": found.prediction.guess if hit else None,
                            "probability": round(found.prediction.guess_probability, 3) if hit else None})
    real = {photo: [logo.prediction.label for logo in service.search.photo(EXAMPLE_PHOTOS / photo).logos]
            for photo in ("real-CocaCola-0003.jpg", "real-CocaCola-0014.jpg", "real-Lavie-0009.jpg")}
    return {"placed": len(answers), "named_right": sum(a["label"] == a["truth"] for a in answers),
            "named_wrong": sum(a["label"] not in (None, a["truth"]) for a in answers), "answers": answers,
            "real_photos": real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Path, help="weights of the default embedder's network to judge")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    embedder = register_candidate(args.candidate) if args.candidate else TRAINED_EMBEDDER
    with tempfile.TemporaryDirectory(prefix="demo-store-") as folder:
        service = LogoService(Settings(data_dir=Path(folder), embedder=embedder))
        started = time.perf_counter()
        build_demo(service, size="full", progress=False)
        built = time.perf_counter() - started
        service.calibration.fit()
        evaluation = service.insight.evaluate(k=service.settings.k, confused=None)  # every pair
        can = service.search.photo(EXAMPLE_PHOTOS / "real-CocaCola-0003.jpg").logos
        biggest = max(can, key=lambda logo: logo.box.width * logo.box.height)
        figures = {
            "embedder": embedder, "weights": str(args.candidate or "bundled"), "logos": service.insight.count(),
            "build_s": round(built, 1), "leave_one_out_top1": round(evaluation.top1, 4),
            "labels": len(evaluation.labels), "labels_at_0": sum(1 for a in evaluation.labels if a.top1 == 0),
            "confused": [list(c) for c in evaluation.confused[:10]],
            # each label at 0 with the labels its logos were given instead: one mark under two names, or colour
            "at_0_given": {a.label: sorted({given for true, given, _ in evaluation.confused if true == a.label})
                           for a in evaluation.labels if a.top1 == 0},
            "coca_cola_can_nearest": [n.label for n in biggest.neighbours[:5]],
            "examples": examples(service),
        }
    if args.json:
        print(json.dumps(figures))
        return
    print(json.dumps({k: v for k, v in figures.items() if k != "examples"}, indent=1))
    ex = figures["examples"]
    print(f"examples: {ex['named_right']} of {ex['placed']} placed logos named right, {ex['named_wrong']} wrong; "
          f"real photos: {ex['real_photos']}")
    for answer in ex["answers"]:
        print(f"  {answer}")


if __name__ == "__main__":
    main()
