"""Reading benchmark: how fast the logo reader reads crops, and how many logos their text alone names.

    python benchmarks/read.py [--sets real-drinks,devicon,fontawesome-brands]
                              [--dataset ../shared/datasets/real-drinks] [--limit N] [--json]

For each set the store holds **names only**: a vocabulary of the set's labels, no logo of any of them. Every
query crop is read (:class:`pipeline.reading.TextReader`) and its text matched against the vocabulary
(:class:`pipeline.reading.Vocabulary`). Reported: crops read per second (2 cores), the share of crops named
right by their text, the share named wrong, and the precision of the names given.

- ``real-drinks``: every box of the dataset's ``test`` split, cut exactly at the box (never trained on). The
  vocabulary is the five class names with the brand names as printed: ``Coca`` also ``Coca-Cola`` and
  ``Coke``, ``VinhHao`` also ``Vinh Hao``. The dataset is the public GitHub repository
  hxtruong6/brand-detection (MIT), prepared as ``../shared/datasets/real-drinks/README.md`` says.
- ``devicon``, ``fontawesome-brands``: the query crops of the retrieval sets (``benchmarks/retrieval.py``;
  photographed renders, evaluation-only collections); the vocabulary is their 200 names each. devicon holds
  many wordmarks, Font Awesome almost none (its glyphs are pictorial): the pair bounds what reading adds.
  devicon gives some brands two entries, the mark and its wordmark ("Pytorch", "Pytorch Wordmark"): a crop of
  either named with the other counts as right (:func:`brand`).

Text heard beside the vote (agreeing text raising the vote's probability, contradicting text lowering it) against
the vote alone, at precision 0.95, on stores that hold logos: ``benchmarks/calibration.py --read`` (its stores,
queries and risk-coverage curve; the README's reading table holds both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.make_retrieval_set import DEFAULT_REAL_DRINKS, ROOT, default_out, generate  # noqa: E402
from benchmarks.make_retrieval_set import generate_photo_crops  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.importing import labelled_files  # noqa: E402
from pipeline.reading import TextReader, Vocabulary  # noqa: E402

SETS = ("real-drinks", "devicon", "fontawesome-brands")
REAL_DRINKS_NAMES = {"Coca": ("Coca-Cola", "Coke"), "VinhHao": ("Vinh Hao",)}


def brand(label: str) -> str:
    """The brand a label stands for: devicon's "X Wordmark" is brand X.

    Example:
        >>> brand("Pytorch Wordmark"), brand("Lavie")
        ('Pytorch', 'Lavie')
    """
    return label.removesuffix(" Wordmark")


def query_folder(name: str, dataset: Path) -> Path:
    if name == "real-drinks":
        return generate_photo_crops(default_out(name), dataset, gallery=5, seed=0) / "query"
    return generate(default_out(name), 200, 3, 2, 0, ROOT / ".cache", name) / "query"


def measure(name: str, folder: Path, reader: TextReader, limit: int) -> dict[str, object]:
    files = labelled_files(folder)
    labels = sorted({label for _, label in files})
    vocabulary = Vocabulary.of((label, REAL_DRINKS_NAMES.get(label, ()) if name == "real-drinks" else ())
                               for label in labels)
    files = files[:limit] if limit else files
    crops = [load_image(path) for path, _ in files]
    started = time.perf_counter()
    texts = reader.read(crops)
    seconds = time.perf_counter() - started
    right = wrong = read = 0
    examples: list[dict[str, str]] = []
    for (path, label), text in zip(files, texts, strict=True):
        read += bool(text)
        match = vocabulary.match(text)
        if match is None:
            continue
        if brand(match.label) == brand(label):
            right += 1
        else:
            wrong += 1
            if len(examples) < 5:
                examples.append({"crop": path.name, "truth": label, "read": text, "named": match.label})
    count = len(files)
    return {"set": name, "crops": count, "vocabulary": len(vocabulary), "crops_per_s": round(count / seconds, 1),
            "with_text": round(read / count, 3), "named_right": round(right / count, 3),
            "named_wrong": round(wrong / count, 3),
            "precision": round(right / (right + wrong), 3) if right + wrong else None, "wrong_examples": examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS), help=f"any of {', '.join(SETS)}")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_REAL_DRINKS, help="the real-drinks folder")
    parser.add_argument("--limit", type=int, default=0, help="read only the first N crops of each set")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sets = args.sets.split(",")
    if set(sets) - set(SETS):
        parser.error(f"unknown sets {sorted(set(sets) - set(SETS))}; choose from {', '.join(SETS)}")
    reader = TextReader()
    reader.read([load_image(ROOT / "assets/examples/real-Lavie-0009.jpg")])  # the models load outside the timing
    rows = [measure(name, query_folder(name, args.dataset), reader, args.limit) for name in sets]
    if args.json:
        print(json.dumps(rows))
        return
    print("text alone, a vocabulary of the set's names and no logo stored (share of all crops)")
    print(f"{'set':<20} {'crops':>6} {'crops/s':>8} {'with text':>10} {'right':>7} {'wrong':>7} {'precision':>10}")
    for row in rows:
        print(f"{row['set']:<20} {row['crops']:>6} {row['crops_per_s']:>8} {row['with_text']:>10} "
              f"{row['named_right']:>7} {row['named_wrong']:>7} {row['precision']!s:>10}")
    for row in rows:
        for example in row["wrong_examples"]:
            print(f"  wrong ({row['set']}): {example}")


if __name__ == "__main__":
    main()
