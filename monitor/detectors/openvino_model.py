"""An ultralytics OpenVINO export served without ultralytics' per-frame Python.

ultralytics' ``predict`` wraps the model in Python per image (letterbox, a float tensor
through torch, NMS in torch, ``Results`` objects). This runner keeps the same arithmetic
and does it in OpenCV and in the compiled model. Measured honestly, the saving is small
for YOLOv8n at 640 on a 2-core AVX2 machine: two runs of ``bench.detectors`` gave 5.7 vs
5.1 and then 5.4 vs 5.7 cameras at 5 fps (lean vs ``predict``), within the noise of a
shared machine (a cProfile run had suggested ~7 ms a frame, inflated by the profiler):

- the letterbox is ultralytics' own (rectangular, centred, grey 114, bilinear), done with
  OpenCV into one uint8 batch;
- BGR→RGB, uint8→float, /255 and NHWC→NCHW are compiled into the model by OpenVINO's
  ``PrePostProcessor``;
- candidates are filtered by confidence in NumPy and suppressed per class with OpenCV's
  batched NMS at ultralytics' IoU (0.7), at most ``max_det`` per frame;
- boxes are mapped back to the frame the way ultralytics' ``scale_boxes`` does.

``tests/detectors/test_runner.py`` checks that its detections equal ultralytics'
``predict`` on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import yaml

from monitor.errors import ModelError

PAD_VALUE = 114
IOU = 0.7


def letterbox_geometry(h: int, w: int, imgsz: int, stride: int) -> tuple[int, int, int, int, int, int]:
    """(new_w, new_h, top, bottom, left, right) of ultralytics' rectangular letterbox."""
    r = min(imgsz / h, imgsz / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (imgsz - new_w) % stride / 2, (imgsz - new_h) % stride / 2
    return new_w, new_h, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)


class OpenVinoDetector:
    """One compiled OpenVINO model; ``predict`` turns same-sized BGR frames into pixel detections."""

    def __init__(self, folder: Path, imgsz: int, *, threads: int | None = None, max_det: int = 300) -> None:
        import openvino as ov
        from openvino.preprocess import ColorFormat, PrePostProcessor

        xmls = sorted(folder.glob("*.xml"))
        if not xmls:
            raise ModelError(f"detector.weights: {folder} holds no OpenVINO model (*.xml)")
        meta_path = folder / "metadata.yaml"
        meta: dict[str, Any] = yaml.safe_load(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(meta.get("names") or {}).items()}
        self.stride = int(meta.get("stride", 32))
        self.imgsz = imgsz
        self.max_det = max_det
        core = ov.Core()
        model = core.read_model(str(xmls[0]))
        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(ppp.build(), "CPU", config)
        except RuntimeError as e:
            raise ModelError(f"detector.weights: OpenVINO cannot compile {xmls[0]}: {e}") from e
        self.request = self.compiled.create_infer_request()

    def predict(self, images: Sequence[npt.NDArray[np.uint8]], conf: float, classes: Sequence[int] | None = None
                ) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Per frame: (xyxy pixel boxes, model class ids, confidences). Frames must share one shape."""
        if not images:
            return []
        h, w = images[0].shape[:2]
        new_w, new_h, top, bottom, left, right = letterbox_geometry(h, w, self.imgsz, self.stride)
        batch = np.full((len(images), new_h + top + bottom, new_w + left + right, 3), PAD_VALUE, np.uint8)
        for i, img in enumerate(images):
            if img.shape[:2] != (h, w):
                raise ValueError(f"OpenVinoDetector.predict: frames of one call must share a shape, got "
                                 f"{img.shape[:2]} and {(h, w)}")
            dst = batch[i, top:top + new_h, left:left + new_w]
            if (new_h, new_w) == (h, w):
                dst[...] = img
            else:
                cv2.resize(img, (new_w, new_h), dst=dst, interpolation=cv2.INTER_LINEAR)
        out = np.asarray(self.request.infer({0: batch})[0])  # (n, 4 + classes, anchors)
        gain_x, gain_y = new_w / w, new_h / h
        wanted = np.asarray(sorted(classes), np.int64) if classes is not None else None
        return [self._decode(p, conf, wanted, gain_x, gain_y, left, top, w, h) for p in out]

    def _decode(self, pred: npt.NDArray[np.float32], conf: float, wanted: npt.NDArray[np.int64] | None,
                gain_x: float, gain_y: float, left: int, top: int, w: int, h: int
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        scores = pred[4:]
        if wanted is not None:
            masked = np.full_like(scores, -1.0)
            masked[wanted] = scores[wanted]
            scores = masked
        cls = scores.argmax(axis=0)
        best = scores[cls, np.arange(scores.shape[1])]
        keep = np.flatnonzero(best > conf)
        if not len(keep):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
        cx, cy, bw, bh = pred[0, keep], pred[1, keep], pred[2, keep], pred[3, keep]
        xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1)
        scores_k, cls_k = best[keep], cls[keep]
        picked = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores_k.tolist(), cls_k.tolist(), conf, IOU)
        idx = np.asarray(picked, np.int64).reshape(-1)
        idx = idx[np.argsort(-scores_k[idx], kind="stable")][: self.max_det]
        b = xywh[idx]
        xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
        xyxy -= np.array([left, top, left, top], np.float32)
        xyxy /= np.array([gain_x, gain_y, gain_x, gain_y], np.float32)
        np.clip(xyxy, 0, np.array([w, h, w, h], np.float32), out=xyxy)
        return xyxy.astype(np.float32), cls_k[idx].astype(np.int64), scores_k[idx].astype(np.float32)
