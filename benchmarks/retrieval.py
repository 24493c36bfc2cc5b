"""Retrieval benchmark: kNN top-1 and recall@5 of every embedder on four sets, side by side.

    python benchmarks/retrieval.py [--embedders A,B] [--sets simple-icons,devicon]
                                   [--dataset ../shared/datasets/real-drinks] [--input-study]

The sets (benchmarks/make_retrieval_set.py makes them once):
- ``simple-icons``: 200 logos of the held-out ``test`` split, 3 gallery and 2 query
  crops each, every crop its own rendering and "photograph". The trained embedders
  saw other logos of this collection: this column shows fit to its style.
- ``fontawesome-brands``: the same protocol with Font Awesome's brand glyphs, and
- ``devicon``: with the colour logos of devicon (multi-colour marks and wordmarks);
  both collections are never trained or tuned on.
- ``real-drinks``: real photo crops; the gallery is 5 boxes per brand of the
  dataset's ``val`` split, the queries are every box of its ``test`` split.
- ``devicon-colourways``, ``fontawesome-brands-colourways``: the same logos with every
  query printed in another colourway than the gallery (one ink, inverted, grey...):
  one mark in other colours should still be one brand.

``--candidate WEIGHTS`` adds a row for a weights file of the default embedder's network
(a training's output), evaluated in this process before it replaces the bundled one.

Each cell runs ``python -m pipeline evaluate GALLERY QUERY --json`` (the production
store, Annoy index and vote) and shows the kNN top-1 / recall@5.

``--input-study`` also measures what colour brings: each colour embedder fed its
crops in colour, in grey (autocontrasted, as the grey models see them), and both
(the two vectors concatenated), by exact nearest neighbour.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.make_retrieval_set import (DEFAULT_REAL_DRINKS, ROOT, default_out, generate,  # noqa: E402
                                           generate_photo_crops)

# ImageNet average pooling, GeM, the multi-stage variant, the grey fine-tune and the colour default
COMPARED = ("efficientnet-lite0-avg", "efficientnet-lite0", "efficientnet-lite0-ms", "efficientnet-lite0-logo",
            "efficientnet-lite0-logo-colour")
SETS = ("simple-icons", "fontawesome-brands", "devicon", "real-drinks", "devicon-colourways",
        "fontawesome-brands-colourways")
DEFAULT_SETS = SETS[:4]
CANDIDATE = "candidate"


def make_set(name: str, dataset: Path, seed: int) -> Path:
    """The set's folder (with ``gallery/`` and ``query/``), generated if missing."""
    if name == "real-drinks":
        return generate_photo_crops(default_out(name), dataset, gallery=5, seed=seed)
    collection = name.removesuffix("-colourways")
    colourways = collection != name
    return generate(default_out(collection, colourways), 200, 3, 2, seed, ROOT / ".cache", collection, colourways)


def register_candidate(weights: Path) -> str:
    """Register the default embedder's network with ``weights`` under :data:`CANDIDATE`; its name."""
    from dataclasses import replace

    from pipeline.embedders import TRAINED_EMBEDDER, get_spec, register_embedder

    if not weights.is_file():
        raise SystemExit(f"--candidate {weights}: no such weights file")
    register_embedder(replace(get_spec(TRAINED_EMBEDDER), name=CANDIDATE, weights=weights,
                              description=f"{TRAINED_EMBEDDER} with {weights}"))
    return CANDIDATE


def evaluate(embedder: str, data: Path) -> dict[str, float]:
    """The CLI's ``evaluate --json`` figures for one embedder on one set (a candidate's in this process)."""
    if embedder == CANDIDATE:
        from pipeline import shapes
        from pipeline.config import Settings
        from pipeline.evaluation import evaluate as evaluate_sets

        report = evaluate_sets(Settings(embedder=CANDIDATE, data_dir=ROOT / ".cache" / "unused"), data / "gallery",
                               data / "query", progress=False)
        return shapes.folder_evaluation(report)
    done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "--embedder", embedder, "evaluate",
                           str(data / "gallery"), str(data / "query"), "--json"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"evaluate with {embedder} on {data} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def input_study(embedder_name: str, data: Path) -> dict[str, tuple[float, float]]:
    """Nearest-neighbour top-1 and recall@5 with colour, grey and both inputs to one network."""
    from pipeline.embedders import create_embedder
    from pipeline.images import load_image
    from pipeline.importing import labelled_files

    embedder = create_embedder(embedder_name)

    def vectors(folder: Path, grey: bool) -> tuple[np.ndarray, list[str]]:
        files = labelled_files(folder)
        embedder.grayscale = grey
        return embedder.embed([load_image(path) for path, _ in files]), [label for _, label in files]

    results = {}
    colour = {split: vectors(data / split, False) for split in ("gallery", "query")}
    grey = {split: vectors(data / split, True) for split in ("gallery", "query")}
    both = {split: (np.hstack([colour[split][0], grey[split][0]]) / np.sqrt(2), colour[split][1])
            for split in colour}
    for mode, sets in (("colour", colour), ("grey", grey), ("both", both)):
        (gallery, gallery_labels), (queries, query_labels) = sets["gallery"], sets["query"]
        order = np.argsort(-queries @ gallery.T, axis=1)[:, :5]
        names = np.array(gallery_labels)[order]
        truth = np.array(query_labels)[:, None]
        results[mode] = (float(np.mean(names[:, 0] == truth[:, 0])), float(np.mean((names == truth).any(axis=1))))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", default=",".join(COMPARED))
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help=f"any of {', '.join(SETS)}")
    parser.add_argument("--candidate", type=Path, help="weights of the default embedder's network to compare")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_REAL_DRINKS, help="the real-drinks folder")
    parser.add_argument("--input-study", action="store_true", help="colour vs grey vs both inputs (colour models)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sets = args.sets.split(",")
    unknown = set(sets) - set(SETS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; choose from {', '.join(SETS)}")
    folders = {name: make_set(name, args.dataset, args.seed) for name in sets}
    embedders = args.embedders.split(",") + ([register_candidate(args.candidate)] if args.candidate else [])
    print("kNN top-1 / recall@5 (simple-icons: held-out logos of the training collection, fit;"
          " the others: never trained on)")
    print(f"{'embedder':<30}" + "".join(f" {name:>20}" for name in sets))
    for embedder in embedders:
        cells = []
        for name in sets:
            figures = evaluate(embedder, folders[name])
            cells.append(f"{figures['top1']:.3f} / {figures['recall@5']:.3f}")
        print(f"{embedder:<30}" + "".join(f" {cell:>20}" for cell in cells), flush=True)
    if args.input_study:
        from pipeline.embedders import get_spec

        print("\ninput study, nearest-neighbour top-1 / recall@5 by exact search")
        for embedder in (e for e in embedders if not get_spec(e).grayscale and get_spec(e).weights):
            study = {name: input_study(embedder, folders[name]) for name in sets}
            for mode in ("colour", "grey", "both"):
                cells = [f"{study[name][mode][0]:.3f} / {study[name][mode][1]:.3f}" for name in sets]
                print(f"{embedder + ' ' + mode:<30}" + "".join(f" {cell:>20}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
