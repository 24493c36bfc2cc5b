"""Which of a photo's boxes are answered: propose generously, keep what is named.

A detector trained on a few brands scores the logos of photos unlike its training low: on real photos it never
saw, the bundled one finds a third of the logos at its 0.4 threshold and more than half at 0.1, with dozens of
other boxes per photo there (text, barcodes, food pictures). So the detector runs down to
``settings.proposal_threshold`` and naming decides: a box at or above ``settings.detector_threshold`` is always
answered, named or not (the detector is sure enough that a person wants to see it); a box below it, and a line
of text proposed as a logo (:meth:`pipeline.usecases.reading.Reading.text_regions`), is answered only when it is
named with a probability of at least the target precision itself (``settings.target_precision``), whatever
lower threshold the calibration found for the store's answers: that threshold holds for the mix of answers a
store gets for its logos, and most proposals are no logo at all (text, barcodes, food), which the calibration
never saw. On the app's own examples on the full demo store, proposals named at the store's threshold (0.63)
gave two wrong labels in seven photos (a "Fairphone" at 0.91 on a strip of the Lavie bottle); at 0.95, none.
The default floor is 0.25: on real-drinks photos of two brands a detector was trained without, proposals down to
it raise the logos found and named from 0.75 to 0.86 for 0.10 more wrong labels a photo (0.19 at most); down to
0.1, strips of packaging text in a brand's colours are named that brand too often (docs/benchmarks.md#proposals).
Imports keep the detector's sure boxes only (:meth:`pipeline.analysis.PhotoAnalyser.analyse`).

Two answered boxes named the same label that overlap by at least half the smaller one, at a similar scale (the
larger at most :data:`SAME_SCALE` times the area of the smaller), are one logo seen twice (a sign's mark and the
mark with its ring): the more likely one is kept. Boxes of one brand side by side, or a pack's box around its
small logos, are not; nor are boxes a person drew, each of which is answered.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.types import Box, Detection, Prediction

SAME_SCALE = 4.0  # area ratio within which two overlapping boxes of one label are one logo
SAME_LOGO_OVERLAP = 0.5  # share of the smaller box inside the larger that makes them one logo


def answered(detections: Sequence[Detection], predictions: Sequence[Prediction], threshold: float,
             proposal_min: float) -> list[int]:
    """The positions of the boxes a search answers, in their order (see the module's rules).

    Args:
        detections: The photo's boxes: the detector's down to the proposal threshold, a person's, text regions.
        predictions: The name of each.
        threshold: The detector score from which a box is answered named or not (``settings.detector_threshold``).
        proposal_min: The probability a proposal's name needs (``settings.target_precision``).

    Example:
        >>> box = Box(0, 0, 100, 100)
        >>> boxes = [Detection(box, 0.9), Detection(Box(200, 0, 300, 90), 0.2), Detection(Box(5, 5, 95, 95), 0.15)]
        >>> names = [Prediction("Lidl", 0.97, guess="Lidl", guess_probability=0.97), Prediction(None, 0.3),
        ...          Prediction("Lidl", 0.96, guess="Lidl", guess_probability=0.96)]
        >>> answered(boxes, names, 0.4, 0.95)  # the unnamed proposal is left out, the second Lidl is the first one
        [0]
        >>> answered(boxes[1:], [Prediction("Lidl", 0.9, guess="Lidl", guess_probability=0.9)] * 2, 0.4, 0.95)
        []
    """
    if len(detections) != len(predictions):
        raise ValueError("one prediction per detection")

    def sure(d: Detection) -> bool:
        return d.kind == "user" or (d.kind != "text" and d.score >= threshold)

    kept = [n for n, (d, p) in enumerate(zip(detections, predictions, strict=True))
            if sure(d) or (p.label is not None and p.confidence >= proposal_min)]
    # of one logo boxed twice, the detector's surer box is kept: it placed it better (a proposal whose name is
    # likelier is still the worse box: on the real-drinks test photos, preferring the likelier name lost 4 of the
    # dataset's boxes to looser ones)
    order = sorted(kept, key=lambda n: (not sure(detections[n]), -detections[n].score, -predictions[n].confidence, n))
    chosen: list[int] = []
    for n in order:
        label = predictions[n].label
        twice = any(predictions[m].label == label and same_logo(detections[n].box, detections[m].box) for m in chosen)
        if detections[n].kind == "user" or label is None or not twice:
            chosen.append(n)
    return sorted(chosen)


def same_logo(a: Box, b: Box) -> bool:
    """Whether two boxes (of one label) are one logo: they overlap by at least :data:`SAME_LOGO_OVERLAP` of the
    smaller and are of a similar scale.

    Example:
        >>> same_logo(Box(0, 0, 100, 100), Box(10, 10, 90, 90)), same_logo(Box(0, 0, 100, 100), Box(0, 0, 20, 20))
        (True, False)
    """
    small, large = min(a.area, b.area), max(a.area, b.area)
    if small <= 0 or large > SAME_SCALE * small:
        return False
    return a.overlap(b) >= SAME_LOGO_OVERLAP * small
