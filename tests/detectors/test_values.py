"""Detections and zones: shapes checked with expected/actual, anchors, the class map."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detectors.detections import CYLINDER, PERSON, Detections, class_lookup
from monitor.detectors.zones import Zone
from tests.detectors.walks import T0


def make(**kw: object) -> Detections:
    base: dict[str, object] = dict(
        camera="c", ts=T0, boxes=np.zeros((2, 4), np.float32), classes=np.zeros(2, np.int64),
        confidences=np.ones(2, np.float32), track_ids=np.full(2, -1, np.int64), width=640, height=360,
    )
    base.update(kw)
    return Detections(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"boxes": np.zeros((2, 3), np.float32)}, "boxes: expected shape (N, 4), got (2, 3)"),
        ({"classes": np.zeros(3, np.int64)}, "classes: expected shape (2,), got (3,)"),
        ({"confidences": np.ones((2, 1), np.float32)}, "confidences: expected shape (2,), got (2, 1)"),
        ({"track_ids": np.zeros(1, np.int64)}, "track_ids: expected shape (2,), got (1,)"),
        ({"boxes": np.array([[0.5, 0, 0.4, 1], [0, 0, 1, 1]], np.float32)}, "x1 <= x2"),
        ({"boxes": np.array([[0, 0, 20, 30], [0, 0, 1, 1]], np.float32)}, "normalised 0..1"),
        ({"classes": np.array([0, 5])}, "expected indices 0..1"),
        ({"width": 0}, "positive frame size"),
        ({"ts": T0.replace(tzinfo=None)}, "aware UTC"),
    ],
)
def test_shape_checks(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make(**kw)


def test_from_pixels_maps_classes_and_normalises() -> None:
    lookup = class_lookup({"person": [0, 1], "cylinder": [3]})
    d = Detections.from_pixels(
        "c", T0, [[0, 0, 64, 36], [320, 180, 640, 360], [10, 10, 20, 20], [0, 0, 6.4, 3.6]],
        [0, 1, 2, 3], [0.9, 0.8, 0.7, 0.6], lookup, 640, 360,
    )
    assert d.classes.tolist() == [PERSON, PERSON, CYLINDER]
    np.testing.assert_allclose(d.boxes[0], [0, 0, 0.1, 0.1], atol=1e-6)
    np.testing.assert_allclose(d.boxes[1], [0.5, 0.5, 1, 1], atol=1e-6)
    assert d.confidences.tolist() == pytest.approx([0.9, 0.8, 0.6])


@pytest.mark.parametrize(
    ("mapping", "message"),
    [({"person": [0], "cylinder": [0]}, "model class 0 mapped to both"), ({"car": [1]}, "expected one of")],
)
def test_class_map_errors(mapping: dict[str, list[int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_lookup(mapping)


def test_anchors_feet_for_people_centre_for_cylinders() -> None:
    d = Detections.build("c", T0, [[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.7, 0.9]], ["person", "cylinder"])
    np.testing.assert_allclose(d.anchors(), [[0.2, 0.6], [0.6, 0.7]], atol=1e-6)
    np.testing.assert_allclose(d.anchors("centre")[0], [0.2, 0.4], atol=1e-6)


SQUARE = Zone.of("z", [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]])
TRIANGLE = Zone.of("t", [[0.0, 1.0], [0.5, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    ("zone", "point", "inside"),
    [
        (SQUARE, (0.4, 0.4), True),
        (SQUARE, (0.1, 0.4), False),
        (SQUARE, (0.6, 0.4), True),  # on an edge
        (SQUARE, (0.2, 0.2), True),  # a corner
        (SQUARE, (0.61, 0.61), False),
        (TRIANGLE, (0.5, 0.9), True),
        (TRIANGLE, (0.1, 0.1), False),
        (TRIANGLE, (0.9, 0.95), True),
    ],
)
def test_zone_contains(zone: Zone, point: tuple[float, float], inside: bool) -> None:
    assert zone.contains(np.array([point], np.float32)).tolist() == [inside]


def test_person_in_zone_by_feet_cylinder_by_centre() -> None:
    # Person's body over the square but feet below it: not inside. Cylinder centred inside: inside.
    d = Detections.build("c", T0, [[0.3, 0.3, 0.4, 0.7], [0.3, 0.3, 0.4, 0.7], [0.3, 0.1, 0.4, 0.45]],
                         ["person", "cylinder", "person"])
    assert SQUARE.trigger(d).tolist() == [False, True, True]


@pytest.mark.parametrize("points", [[[0, 0], [1, 1]], [[0, 0], [2, 0], [1, 1]]])
def test_zone_checks(points: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="Zone z"):
        Zone.of("z", points)


def test_as_json_is_normalised_overlay() -> None:
    d = Detections.build("c", T0, [[0.1, 0.2, 0.3, 0.6]], ["person"], track_ids=[4], confidences=[0.876])
    j = d.as_json()
    assert j["objects"] == [{"cls": "person", "box": [0.1, 0.2, 0.3, 0.6], "conf": 0.876, "track": 4}]
