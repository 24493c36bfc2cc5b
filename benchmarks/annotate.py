"""Bulk auto-annotation: photos/s, memory over a long run, and an interrupted run resumed.

    python benchmarks/annotate.py [--photos 2000] [--unique 200] [--kill-after 150] [--ray [--workers N]] [--json]

Makes ``--photos`` 1024 x 768 packaging photos with one to three demo logos each
(``--unique`` distinct scenes from ``pipeline.training.scenes``, the rest copies
with a few pixels changed, so that every photo is a new image to the store), and
a store with the small demo (43 brands, human labels, calibrated). Then:

1. ``python -m pipeline import-photos`` on the folder, in a child process that is
   killed (SIGKILL) once ``--kill-after`` photos are recorded; then the same
   command again, which must resume: at the end every photo is recorded once and
   no logo is stored twice (the same photo hash and box).
2. The throughput and memory of that resumed run over the remaining photos:
   photos/s, and the child's resident memory sampled as it goes (flat: no growth
   with the number of photos done).

``--ray`` runs both imports with ``import-photos --ray`` (Ray Data actors, ``--workers`` of them) instead of
the plain in-process loop, to compare the two on the same photos.

Target (issue: the annotation loop): >= 3 photos/s on 2 cores, memory flat over
2,000 photos, no duplicates after a resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Settings  # noqa: E402
from pipeline.demo import DEMO_LOGOS, build_demo  # noqa: E402
from pipeline.service import LogoService  # noqa: E402
from pipeline.training.scenes import compose_scene  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_photos(folder: Path, count: int, unique: int, seed: int = 0) -> None:
    """``count`` photos: ``unique`` generated scenes, then copies each with a few pixels changed."""
    rng = np.random.default_rng(seed)
    brands = sorted(p for p in DEMO_LOGOS.iterdir() if p.is_dir())
    scenes = []
    for number in range(min(unique, count)):
        chosen = rng.choice(len(brands), size=int(rng.integers(1, 4)), replace=False)
        cards = [(Image.open(sorted(brands[c].glob("*.png"))[0]).convert("RGB"), brands[c].name) for c in chosen]
        scene = compose_scene(cards, rng, size=(1024, 768), strength=0.4, logo_fraction=(0.15, 0.3)).image
        scene.save(folder / f"photo-{number:05d}.jpg", quality=90)
        scenes.append(np.asarray(scene))
    for number in range(len(scenes), count):
        pixels = scenes[number % len(scenes)].copy()
        row, column = 8 * (number // 128 % 96), 8 * (number % 128)
        pixels[row:row + 8, column:column + 8] = (number * 37 % 256, number * 91 % 256, number % 256)  # survives JPEG
        Image.fromarray(pixels).save(folder / f"photo-{number:05d}.jpg", quality=90)


def recorded(data: Path) -> int:
    try:
        with sqlite3.connect(data / "logos.sqlite", timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_import(data: Path, photos: Path, *, kill_after: int | None = None,
               extra: tuple[str, ...] = ()) -> dict[str, object]:
    """``import-photos`` in a child process; killed after ``kill_after`` recorded photos, else run to the end."""
    env = {**os.environ, "LOGOS_DATA_DIR": str(data), "LOGOS_DEMO": "none"}
    command = [sys.executable, "-m", "pipeline", "-q", "import-photos", str(photos), *extra]
    start_count = recorded(data)
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, float]] = []
    while child.poll() is None:
        time.sleep(2)
        done = recorded(data)
        try:
            samples.append((done - start_count, rss_mb(child.pid)))
        except FileNotFoundError:
            break
        if kill_after is not None and done >= kill_after:
            child.send_signal(signal.SIGKILL)
            child.wait()
            return {"killed_at": done}
    out, err = child.communicate()
    if child.returncode:
        raise SystemExit(f"import-photos failed: {err[-1000:]}")
    seconds = time.perf_counter() - started
    report = json.loads(out.strip().splitlines()[-1])
    return {"report": report, "seconds": seconds, "samples": samples}


def duplicates(data: Path) -> int:
    with sqlite3.connect(data / "logos.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) - COUNT(DISTINCT image_hash || x0 || y0 || x1 || y1) FROM logos"
                            " WHERE x0 IS NOT NULL").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--unique", type=int, default=200, help="distinct generated scenes (the rest are copies)")
    parser.add_argument("--kill-after", type=int, default=150, help="SIGKILL the first run after this many photos")
    parser.add_argument("--ray", action="store_true", help="import with import-photos --ray")
    parser.add_argument("--workers", type=int, help="--ray: worker actors")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    extra = ("--ray",) + (("--workers", str(args.workers)) if args.workers else ()) if args.ray else ()
    with tempfile.TemporaryDirectory(prefix="annotate-bench-") as tmp:
        photos, data = Path(tmp) / "photos", Path(tmp) / "data"
        photos.mkdir()
        made = time.perf_counter()
        make_photos(photos, args.photos, args.unique)
        print(f"made {args.photos} photos in {time.perf_counter() - made:.0f} s", file=sys.stderr)
        service = LogoService(Settings.from_env(data_dir=data))
        build_demo(service, size="small", progress=False)
        service.calibration.fit()
        service._parts.store.close()
        first = run_import(data, photos, kill_after=args.kill_after, extra=extra)
        second = run_import(data, photos, extra=extra)
        report, samples = second["report"], second["samples"]
        done = report["photos"]
        rss = [mb for _, mb in samples]
        quarter = max(1, len(rss) // 4)
        figures = {
            "photos": args.photos, "killed_at": first["killed_at"], "resumed": report["resumed"],
            "photos_after_resume": done, "recorded": recorded(data), "same_pixels_skipped": report["duplicates"],
            "duplicate_logos": duplicates(data),
            "logos": report["added"], "labelled": report["labelled"], "no_logo": len(report["no_logo"]),
            "photos_per_s": round(done / second["seconds"], 2),
            "rss_mb_first_quarter": round(float(np.median(rss[:quarter])), 1) if rss else None,
            "rss_mb_last_quarter": round(float(np.median(rss[-quarter:])), 1) if rss else None,
            "rss_mb_peak": round(max(rss), 1) if rss else None,
            "cores": os.cpu_count(), "ray_workers": (args.workers or os.cpu_count()) if args.ray else 0,
        }
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:>22}: {value}")
    ok = (figures["recorded"] + figures["same_pixels_skipped"] == args.photos and figures["duplicate_logos"] == 0
          and figures["resumed"] + done == figures["recorded"])
    print(f"{'resume':>22}: {'no duplicates, every photo once' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
