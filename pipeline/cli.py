"""Command line: ``python -m pipeline [--data-dir DIR] COMMAND`` (also the ``logos`` script).

Output shapes of ``search --json``, ``evaluate --json`` and ``stats --json`` are
a public contract that other tools parse: keep them stable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import shapes
from pipeline.config import Settings
from pipeline.datasets import LOADERS as DATASET_FORMATS
from pipeline.datasets import DetectionDataset, load_dataset, real_drinks_split
from pipeline.detectors import list_detectors
from pipeline.embedders import list_embedders
from pipeline.errors import DatasetError, LogoError
from pipeline.exports import EXPORTERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline",
                                     description="Find logos on product photos by nearest-neighbour search.")
    parser.add_argument("--data-dir", type=Path, help="store and index folder (default: $LOGOS_DATA_DIR or ./data)")
    parser.add_argument("--embedder", help=f"embedding model: {', '.join(list_embedders())} or hf-hub:<repo>")
    parser.add_argument("--detector", help=f"logo detector: {', '.join(list_detectors())}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cmd = commands.add_parser("import-folder", help="add labelled logos from an ImageFolder tree (LABEL/IMAGE)")
    cmd.add_argument("folder", type=Path)
    cmd = commands.add_parser("import-dataset", help="add the labelled boxes of a YOLO or COCO detection dataset")
    cmd.add_argument("dataset", type=Path, help="YOLO: the folder (images/, labels/, classes.txt or data.yaml); "
                                                 "COCO: the JSON file, or a folder holding one")
    cmd.add_argument("--format", choices=sorted(DATASET_FORMATS), required=True)
    cmd.add_argument("--split", help="only these splits (comma-separated), e.g. train,val")
    cmd.add_argument("--split-by", choices=["folder", "real-drinks"], default="folder",
                     help="folder: images/<split>/ (Ultralytics layout); real-drinks: that dataset's published "
                          "crc32 split of file names")
    cmd.add_argument("--skip-empty-boxes", action="store_true",
                     help="drop boxes of zero size (under a pixel) instead of refusing the dataset")
    cmd = commands.add_parser("import-photos", help="auto-annotate photos: store each detected logo with its kNN "
                                                    "label as a machine label (resumable)")
    cmd.add_argument("source", type=Path, help="a folder of photos, or a .csv (path column) / .jsonl list of paths")
    cmd.add_argument("--report", type=Path, help="write the report (counts, photos with no logo, failures) here "
                                                 "(default: DATA_DIR/import-photos-report.json)")
    cmd.add_argument("--ray", action="store_true", help="detect and embed on Ray Data workers (this machine, or "
                                                        "the cluster RAY_ADDRESS names); needs requirements-ray.txt")
    cmd.add_argument("--workers", type=int, help="--ray: worker actors (default: one per CPU)")
    commands.add_parser("build-index", help="rebuild the ANN index from every stored logo")
    cmd = commands.add_parser("reembed", help="re-embed every stored logo with --embedder (when the store has another)")
    cmd.add_argument("--ray", action="store_true", help="cut and embed on Ray Data workers (requirements-ray.txt)")
    cmd.add_argument("--workers", type=int, help="--ray: worker actors (default: one per CPU)")
    commands.add_parser("calibrate", help="fit the confidence calibration on the store's human labels")
    cmd = commands.add_parser("threshold", help="set the confidence a label needs to be given ('none' removes it)")
    cmd.add_argument("label")
    cmd.add_argument("value", type=_threshold, metavar="VALUE", help="0..1, or none")
    cmd = commands.add_parser("search", help="find and name the logos of a photo")
    cmd.add_argument("image", type=Path)
    cmd.add_argument("--box", action="append", type=_box, metavar="X0,Y0,X1,Y1",
                     help="search this box instead of running the detector (repeatable)")
    cmd.add_argument("-k", type=int, help="neighbours per logo")
    cmd.add_argument("--json", action="store_true", help="one JSON line (public format)")
    cmd = commands.add_parser("stats", help="counts of logos, labels and index")
    cmd.add_argument("--json", action="store_true")
    cmd = commands.add_parser("evaluate", help="kNN accuracy of query crops against a gallery (both ImageFolder), "
                                               "or with --store of the store's own human labels (leave-one-out)")
    cmd.add_argument("gallery", type=Path, nargs="?")
    cmd.add_argument("queries", type=Path, nargs="?")
    cmd.add_argument("--store", action="store_true", help="evaluate the store: per label, and the most confused pairs")
    cmd.add_argument("-k", type=int, default=10, help="--store: neighbours searched (recall@k)")
    cmd.add_argument("--json", action="store_true", help="last line: JSON figures (public format)")
    cmd = commands.add_parser("export", help="write photos, boxes and labels as COCO, YOLO, LabelMe, CSV or Parquet")
    cmd.add_argument("out", type=Path, help="a new folder (coco, yolo, labelme) or file (csv, parquet)")
    cmd.add_argument("--format", choices=sorted(EXPORTERS), required=True)
    cmd.add_argument("--human-only", action="store_true", help="only labels people set or accepted")
    cmd.add_argument("--labels", help="only these labels (comma-separated)")
    cmd.add_argument("--unlabelled", action="store_true", help="csv/parquet: list unlabelled logos too")
    cmd.add_argument("--embeddings", action="store_true", help="csv/parquet: add each logo's vector")
    cmd = commands.add_parser("history", help="label events, newest first: who changed which label, when")
    cmd.add_argument("--logo", type=int, help="only this logo's events")
    cmd.add_argument("--limit", type=int, default=50)
    cmd.add_argument("--json", action="store_true", help="one JSON line")
    cmd = commands.add_parser("labels", help="the vocabulary: labels that exist before any logo of them, with aliases")
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = actions.add_parser("import", help="add the labels of FILE (UTF-8, one a line; aliases after a tab, "
                                              "split by |); a malformed line stores nothing")
    action.add_argument("file", type=Path)
    action = actions.add_parser("list", help="every label: the vocabulary's and those logos carry")
    action.add_argument("--json", action="store_true", help="one JSON line")
    cmd = commands.add_parser("demo", help="build the demo store from assets/ if the data folder is empty")
    cmd.add_argument("--assets", type=Path, default=None, help="demo logos folder (default: bundled)")
    cmd.add_argument("--small", action="store_true", help="the 43 bundled brands only, not every simple-icons brand")
    return parser


def _box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a box is X0,Y0,X1,Y1 numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"a box is X0,Y0,X1,Y1, got {text!r}")
    return values


def _threshold(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a threshold is a number between 0 and 1, or none; got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a threshold is between 0 and 1, got {value}")
    return value


def _dataset(args: argparse.Namespace) -> DetectionDataset:
    """The dataset ``import-dataset`` names, narrowed to ``--split`` if given."""
    path = args.dataset
    if args.format == "coco" and path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise DatasetError(f"{path}: expected one COCO .json file in the folder, found {len(found)}")
        path = found[0]
    dataset = load_dataset(path, args.format, skip_empty_boxes=args.skip_empty_boxes)
    if args.split:
        dataset = dataset.split(args.split.split(","), split_of=real_drinks_split if args.split_by == "real-drinks"
                                else None)
    return dataset


def _store_table(figures: dict) -> str:
    k = figures["k"]
    lines = [f"top-1 {figures['top1']:.3f}, recall@{k} {figures[f'recall@{k}']:.3f} over {figures['queries']} "
             f"human-labelled logos (leave-one-out, {figures['model']})", "", "worst labels:"]
    lines += [f"  {a['label']:<30} {a['logos']:>5} logos  top-1 {a['top1']:.2f}  recall@{k} {a[f'recall@{k}']:.2f}"
              for a in figures["labels"][:15]]
    lines += ["", "most confused (label -> given instead):"]
    lines += [f"  {c['label']:<30} -> {c['given']:<30} {c['times']}x" for c in figures["confused"]] or ["  none"]
    return "\n".join(lines)


def _history_table(events: list[dict]) -> str:
    from datetime import datetime, timezone

    if not events:
        return "no label events"
    return "\n".join(
        f"{datetime.fromtimestamp(e['at'], timezone.utc):%Y-%m-%d %H:%M:%S}  #{e['logo_id']:<8} "
        f"{e['old_label'] or '-'} ({e['old_source'] or '-'}) -> {e['new_label'] or '-'} ({e['new_source'] or '-'})"
        f"  by {e['who']}" + ("  [undone]" if e["undone"] else "") for e in events)


def _print_search(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, separators=(",", ":")))
        return
    if not result["logos"]:
        print("no logo found")
    for number, logo in enumerate(result["logos"], 1):
        label = logo["label"] or "unknown"
        print(f"logo {number} at {logo['box']}: {label} (confidence {logo['confidence']:.2f})")
        for n in logo["neighbours"]:
            print(f"    #{n['id']:<8} {n['label'] or '-':<30} distance {n['distance']:.3f}")


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 ok, 1 bad input, 2 usage)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    progress = not args.quiet and sys.stderr.isatty()
    # imported here so --help answers without loading torch
    from pipeline.demo import DEMO_LOGOS, build_demo
    from pipeline.evaluation import evaluate
    from pipeline.exports import ExportOptions
    from pipeline.importing import import_dataset, import_folder, import_photos
    from pipeline.service import LogoService
    from pipeline.usecases.calibration import calibration_summary

    try:
        settings = Settings.from_env(data_dir=args.data_dir, embedder=args.embedder, detector=args.detector)
        if args.command == "evaluate" and not args.store:
            if args.gallery is None or args.queries is None:
                print("error: evaluate needs GALLERY and QUERIES folders, or --store", file=sys.stderr)
                return 2
            report = evaluate(settings, args.gallery, args.queries, progress=progress)
            figures = shapes.folder_evaluation(report)
            print(json.dumps(figures) if args.json else
                  "\n".join(f"{key:>10}: {value}" for key, value in figures.items()))
            return 0
        service = LogoService(settings)
        if args.command == "import-folder":
            print(json.dumps(shapes.import_report(import_folder(service, args.folder, progress=progress))))
        elif args.command == "import-dataset":
            print(json.dumps(shapes.import_report(import_dataset(service, _dataset(args), progress=progress))))
        elif args.command == "import-photos":
            report_path = args.report or settings.data_dir / "import-photos-report.json"
            result = import_photos(service, args.source, report=report_path, progress=progress, ray=args.ray,
                                   workers=args.workers)
            print(json.dumps(shapes.import_report(result)))
        elif args.command == "evaluate":
            figures = shapes.store_evaluation(service.insight.evaluate(k=args.k))
            print(json.dumps(figures) if args.json else _store_table(figures))
        elif args.command == "export":
            options = ExportOptions(human_only=args.human_only, unlabelled=args.unlabelled,
                                    embeddings=args.embeddings,
                                    labels=frozenset(x.strip() for x in args.labels.split(",")) if args.labels
                                    else None)
            print(json.dumps(shapes.export_report(service.insight.export_to(args.format, args.out, options))))
        elif args.command == "history":
            events = service.labels.history(args.logo, limit=args.limit)
            print(json.dumps(events) if args.json else _history_table(events))
        elif args.command == "build-index":
            print(json.dumps(service.maintenance.build_index().__dict__))
        elif args.command == "reembed":
            print(json.dumps(shapes.reembed_report(service.maintenance.reembed(progress=progress, ray=args.ray,
                                                                                 workers=args.workers))))
        elif args.command == "calibrate":
            print(json.dumps(calibration_summary(service.calibration.fit())))
        elif args.command == "threshold":
            service.labels.set_threshold(args.label, args.value)
            print(json.dumps({"label": args.label, "threshold": args.value}))
        elif args.command == "search":
            _print_search(shapes.search(service.search.photo(args.image, boxes=args.box, k=args.k)), args.json)
        elif args.command == "stats":
            stats = shapes.stats(service.insight.stats())
            print(json.dumps(stats) if args.json else "\n".join(f"{k:>16}: {v}" for k, v in stats.items()))
        elif args.command == "labels" and args.action == "import":
            added, known = service.labels.import_vocabulary(args.file.read_bytes())
            print(json.dumps({"added": added, "labels": known}))
        elif args.command == "labels":
            entries = service.labels.vocabulary()
            print(json.dumps(shapes.vocabulary(entries)) if args.json else "\n".join(
                f"{e.label}\t{'|'.join(e.aliases)}\t{e.logos} logo(s)" for e in entries))
        elif args.command == "demo":
            size = "small" if args.small else settings.demo
            print(json.dumps(build_demo(service, args.assets or DEMO_LOGOS, size=size, progress=progress)))
    except (LogoError, NotADirectoryError, IsADirectoryError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(run())
