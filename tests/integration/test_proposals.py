"""Propose generously, keep what is named (pipeline/proposals.py): boxes the detector is unsure of come back when
they are named, one logo boxed twice comes back once, and the page shows the left-out proposals on request."""

from __future__ import annotations

from PIL import Image

from pipeline import shapes
from pipeline.detectors import Detector
from pipeline.importing import import_folder
from pipeline.types import Box, Detection


class FixedBoxes(Detector):
    """A detector that finds the same boxes on every photo, with the scores given."""

    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections

    def detect(self, image: Image.Image) -> list[Detection]:
        return list(self.detections)


def _photo(query_images) -> tuple[Image.Image, int, int]:
    kfc = Image.open(query_images["KFC"]).convert("RGB")
    photo = Image.new("RGB", (kfc.width * 3, kfc.height), (250, 250, 250))
    photo.paste(kfc, (0, 0))
    return photo, kfc.width, kfc.height


def test_a_logo_the_detector_is_unsure_of_is_answered_when_named_and_unnamed_proposals_are_left_out(
        service, gallery_dir, query_images):
    import_folder(service, gallery_dir, progress=False)
    service._parts.settings = service.settings.replace(k=3, max_distance=0.5)  # three voters; far is unknown
    photo, w, h = _photo(query_images)
    service._parts.detector = FixedBoxes([Detection(Box(0, 0, w, h), 0.2, "logo"),  # the KFC logo, scored low
                                          Detection(Box(2 * w, 0, 3 * w, h), 0.2, "logo")])  # blank: no logo
    result = service.search.photo(photo)
    assert [logo.prediction.label for logo in result.logos] == ["KFC"]
    assert result.logos[0].prediction.confidence >= service.settings.target_precision
    assert [logo.prediction.label for logo in result.unnamed] == [None]  # kept for the page, out of the answer
    assert [logo["label"] for logo in shapes.search(result)["logos"]] == ["KFC"]
    assert len(result.vectors) == 1  # one vector per answered logo
    sure = service.settings.replace(detector_threshold=0.1)  # the same boxes, now sure: answered named or not
    service._parts.settings = sure
    assert [logo.prediction.label for logo in service.search.photo(photo).logos] == ["KFC", None]


def test_one_logo_boxed_twice_comes_back_once_unless_a_person_drew_both(service, gallery_dir, query_images):
    import_folder(service, gallery_dir, progress=False)
    service._parts.settings = service.settings.replace(k=3)
    photo, w, h = _photo(query_images)
    service._parts.detector = FixedBoxes([Detection(Box(0, 0, w, h), 0.8, "logo"),
                                          Detection(Box(6, 6, w - 6, h - 6), 0.7, "logo")])
    (found,) = service.search.photo(photo).logos
    assert found.prediction.label == "KFC"
    drawn = service.search.photo(photo, boxes=[[0, 0, w, h], [6, 6, w - 6, h - 6]]).logos
    assert [logo.prediction.label for logo in drawn] == ["KFC", "KFC"]
