"""The model runner: any ultralytics-loadable weights, batched, off the event loop.

- ``resolve_weights`` picks what to load: ``.pt`` weights with backend ``openvino`` or
  ``onnx`` are exported once with ultralytics' own exporter (offline: no downloads) and
  the export is cached beside the weights (or in ``detector.export_dir``), named by the
  weights' content hash and the input size, so a changed file is never served stale.
  An ``.onnx`` file or an ``*_openvino_model`` folder is loaded as it is.
- ``ModelRunner`` loads the model once and turns a batch of BGR frames from many cameras
  into one inference call, returning ``Detections`` in our classes through the class map
  (``detector.classes``: model class ids → ``person`` / ``cylinder``). An OpenVINO export
  is served by ``OpenVinoDetector`` (the same arithmetic as ultralytics' ``predict``
  without its per-frame Python); torch and ONNX go through ultralytics.
- ``InferenceWorker`` runs the runner on its own thread behind a bounded queue: when the
  queue is full the oldest request is dropped (its caller gets ``None``) and counted.
  Inference time, batch size, queue depth and drops are Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Gauge, Histogram

from monitor.config import DetectorConfig
from monitor.detectors.detections import CLASSES, Detections, class_lookup
from monitor.detectors.openvino_model import OpenVinoDetector
from monitor.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

INFER_SECONDS = Histogram(
    "monitor_detector_inference_seconds", "one batched inference call",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
BATCH_SIZE = Histogram("monitor_detector_batch_frames", "frames per inference call", buckets=(1, 2, 4, 8, 16, 32, 64))
QUEUE_DEPTH = Gauge("monitor_detector_queue_depth", "frames waiting for the model")
DROPPED = Counter("monitor_detector_dropped_total", "frames dropped because the model fell behind")
FRAMES = Counter("monitor_detector_frames_total", "frames run through the model")


def yolo_env(root: Path | None = None) -> None:
    """Offline ultralytics: no downloads, no installs, its config dir under var/, and quiet.

    ultralytics logs to standard output, which ``monitor analyze --json`` owns; its
    messages go through the ``ultralytics`` logger at WARNING and above only."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str((root or Path.cwd()) / "var" / "yolo"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.getLogger("ultralytics").setLevel(logging.WARNING)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def export_path(weights: Path, backend: str, imgsz: int, export_dir: Path | None = None) -> Path:
    """Where the cached export of ``weights`` for ``backend`` at ``imgsz`` lives."""
    where = export_dir or weights.parent
    stem = f"{weights.stem}-{file_digest(weights)}-{imgsz}"
    if backend == "openvino":
        return where / f"{stem}_openvino_model"
    return where / f"{stem}.onnx"


def resolve_weights(
    weights: str | Path, backend: str, imgsz: int, *, batch: int = 8, export_dir: str | Path | None = None
) -> Path:
    """The path to load for ``backend``; exports ``.pt`` weights once and caches the export."""
    yolo_env()
    w = Path(weights)
    if not w.exists():
        raise ModelError(f"detector.weights: {w} does not exist")
    if w.is_dir() or w.suffix != ".pt" or backend == "torch":
        return w
    target = export_path(w, backend, imgsz, Path(export_dir) if export_dir else None)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to %s at %d px (once; cached at %s)", w, backend, imgsz, target)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        src = Path(tmp) / f"{target.name.split('_openvino_model')[0].removesuffix('.onnx')}.pt"
        shutil.copyfile(w, src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ultralytics import YOLO  # type: ignore[attr-defined]

            try:
                out = YOLO(str(src)).export(
                    format="openvino" if backend == "openvino" else "onnx",
                    imgsz=imgsz, dynamic=True, batch=batch, half=False, simplify=True, verbose=False,
                )
            except Exception as e:
                raise ModelError(f"detector.backend: cannot export {w} to {backend}: {e}") from e
        made = Path(str(out))
        if not made.is_absolute():
            made = src.parent / made.name
        with contextlib.suppress(OSError):  # another process may have placed it first
            os.replace(made, target)
        if not target.exists():
            raise ModelError(f"detector.backend: export of {w} to {backend} left nothing at {target}")
    log.info("exported %s in %.1fs", target, time.monotonic() - t0)
    return target


@dataclass
class FrameRequest:
    camera: str
    ts: datetime
    image: npt.NDArray[np.uint8]  # BGR


class ModelRunner:
    """A loaded model; ``detect`` runs one batched call (synchronous; call it off the loop)."""

    def __init__(
        self, cfg: DetectorConfig, *, export_dir: str | Path | None = None, threads: int | None = None,
        lean: bool = True,
    ) -> None:
        yolo_env()
        self.cfg = cfg
        self.lookup = class_lookup(cfg.classes)
        self.path = resolve_weights(
            cfg.weights, cfg.backend, cfg.imgsz, batch=cfg.batch, export_dir=export_dir or cfg.export_dir
        )
        self.lean: OpenVinoDetector | None = None
        self.model: Any = None
        if threads:
            import torch

            torch.set_num_threads(threads)
        if lean and self.path.is_dir() and self.path.name.endswith("_openvino_model"):
            self.lean = OpenVinoDetector(self.path, cfg.imgsz, threads=threads)
            self.names: dict[int, str] = self.lean.names
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from ultralytics import YOLO  # type: ignore[attr-defined]

                try:
                    self.model = YOLO(str(self.path), task="detect")
                except Exception as e:  # ultralytics raises many kinds; the product raises one
                    raise ModelError(f"detector.weights: cannot load {self.path}: {e}") from e
            self.names = self._names()
        check_class_map(cfg.classes, self.names)
        self.calls = 0
        self.frames = 0
        self.infer_s = 0.0

    def _names(self) -> dict[int, str]:
        names = getattr(self.model, "names", None) or {}
        if isinstance(names, list):
            return dict(enumerate(names))
        return {int(k): str(v) for k, v in dict(names).items()}

    def predict(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(self.model.predict(
                list(images), imgsz=self.cfg.imgsz, conf=self.cfg.confidence, verbose=False,
                classes=sorted(self.lookup),
            ))

    def detect(self, frames: Sequence[FrameRequest]) -> list[Detections]:
        """One inference call for frames of many cameras (per frame size, chunks of ``detector.batch``).

        Frames of one size share a call; sizes are not mixed, since a mixed batch is
        letterboxed to one square and its detections differ from the frames' own.
        """
        out: list[Detections | None] = [None] * len(frames)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            by_shape.setdefault(tuple(f.image.shape), []).append(i)
        for idx in by_shape.values():
            for d, i in zip(self._detect_same([frames[i] for i in idx]), idx, strict=True):
                out[i] = d
        return [d for d in out if d is not None]

    def _detect_same(self, frames: Sequence[FrameRequest]) -> list[Detections]:
        out: list[Detections] = []
        for i in range(0, len(frames), self.cfg.batch):
            chunk = frames[i : i + self.cfg.batch]
            t0 = time.perf_counter()
            if self.lean is not None:
                found = self.lean.predict([f.image for f in chunk], self.cfg.confidence, sorted(self.lookup))
                dets = [Detections.from_pixels(f.camera, f.ts, xyxy, cls, conf, self.lookup,
                                               f.image.shape[1], f.image.shape[0])
                        for (xyxy, cls, conf), f in zip(found, chunk, strict=True)]
            else:
                dets = [Detections.from_ultralytics(r, f.camera, f.ts, self.lookup)
                        for r, f in zip(self.predict([f.image for f in chunk]), chunk, strict=True)]
            dt = time.perf_counter() - t0
            self.calls += 1
            self.frames += len(chunk)
            self.infer_s += dt
            INFER_SECONDS.observe(dt)
            BATCH_SIZE.observe(len(chunk))
            FRAMES.inc(len(chunk))
            out += dets
        return out


def check_class_map(classes: Mapping[Any, Sequence[int]], names: Mapping[int, str]) -> None:
    for ours, ids in classes.items():
        for i in ids:
            if i not in names:
                raise ConfigError(
                    f"detector.classes.{ours}: model class {i} does not exist; the model's classes are "
                    + ", ".join(f"{k}={v}" for k, v in sorted(names.items()))
                )
    if not any(classes.get(c) for c in CLASSES):
        raise ConfigError("detector.classes: maps no model class to person or cylinder")


class InferenceWorker:
    """``await detect(...)`` from any camera task; one thread batches whatever is waiting.

    The queue holds at most ``maxsize`` frames; a new frame on a full queue drops the
    oldest one, whose caller gets ``None`` (counted in ``dropped``).
    """

    def __init__(self, runner: ModelRunner, *, maxsize: int = 32, linger_s: float = 0.005) -> None:
        self.runner = runner
        self.maxsize = maxsize
        self.linger_s = linger_s
        self._queue: collections.deque[tuple[FrameRequest, asyncio.Future[Detections | None],
                                             asyncio.AbstractEventLoop]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="detector-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for _, fut, loop in pending:
            _resolve(loop, fut, None)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("inference thread did not stop within %.1fs", timeout_s)
            self._thread = None

    async def detect(self, camera: str, ts: datetime, image: npt.NDArray[np.uint8]) -> Detections | None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Detections | None] = loop.create_future()
        with self._cond:
            if self._stop:
                return None
            if len(self._queue) >= self.maxsize:
                _, old, old_loop = self._queue.popleft()
                self.dropped += 1
                DROPPED.inc()
                _resolve(old_loop, old, None)
            self._queue.append((FrameRequest(camera, ts, image), fut, loop))
            QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify()
        return await fut

    def _run(self) -> None:
        batch_max = self.runner.cfg.batch
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(1.0)
                if self._stop:
                    return
                if len(self._queue) < batch_max and self.linger_s > 0:
                    self._cond.wait(self.linger_s)  # let the other cameras' frames join the batch
                items = [self._queue.popleft() for _ in range(min(batch_max, len(self._queue)))]
                QUEUE_DEPTH.set(len(self._queue))
            if not items:
                continue
            try:
                dets = self.runner.detect([r for r, _, _ in items])
            except Exception as e:
                self.failed += 1
                log.exception("inference failed on a batch of %d frames", len(items))
                for _, fut, loop in items:
                    _fail(loop, fut, e)
                continue
            for (_, fut, loop), d in zip(items, dets, strict=True):
                _resolve(loop, fut, d)


def _resolve(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Detections | None], value: Detections | None) -> None:
    def set_it() -> None:
        if not fut.done():
            fut.set_result(value)

    try:
        loop.call_soon_threadsafe(set_it)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


def _fail(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Detections | None], e: BaseException) -> None:
    def set_it() -> None:
        if not fut.done():
            fut.set_exception(e)

    try:
        loop.call_soon_threadsafe(set_it)
    except RuntimeError:
        pass
