"""Reading the logo (pipeline/reading.py): the OCR reads a wordmark and a real photo's logo, the text names its
label from the vocabulary alone, and a search gives each logo its text, for the largest logos only."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

from fastapi.testclient import TestClient

from app import create_app
from pipeline import shapes
from pipeline.annotation import ReviewVerdict
from pipeline.detectors import GivenBoxesDetector
from pipeline.errors import NotFoundError
from pipeline.reading import TextReader, Vocabulary, fold
from tests.conftest import ROOT, dash_callback

LAVIE = ROOT / "assets/examples/real-Lavie-0009.jpg"


def wordmark(text: str, size: int = 44) -> Image.Image:
    font = ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    image = Image.new("RGB", (right - left + 40, bottom - top + 30), (250, 250, 245))
    ImageDraw.Draw(image).text((20 - left, 15 - top), text, fill=(10, 90, 40), font=font)
    return image


def test_a_wordmark_is_read_and_names_its_label_with_no_logo_stored():
    reader = TextReader()
    heineken, organic, blank = reader.read([wordmark("Heineken"), wordmark("ORGANIC"), Image.new("RGB", (90, 60))])
    assert "heineken" in fold(heineken) and blank == ""
    vocabulary = Vocabulary.of([("Heineken", ()), ("Organic Valley", ())])
    assert vocabulary.match(heineken).label == "Heineken"
    assert vocabulary.match(organic) is None  # a generic word names nothing


def test_a_real_photos_logo_is_read():
    (text,) = TextReader().read([Image.open(LAVIE)])
    assert "lavie" in fold(text).replace(" ", "")


def test_a_search_gives_each_logo_its_text_for_the_largest_logos_only(service):
    service.ingest.photo(Image.open(LAVIE), labels=["Lavie"])
    photo = Image.open(LAVIE)
    width, height = photo.size
    boxes = [[0, 0, width, height], [0, 0, 40, 40], [width - 40, height - 40, width, height]]
    service._parts.settings = service.settings.replace(read_text=1)  # one logo read per search
    result = service.search.photo(photo, boxes=boxes)
    texts = [logo.text for logo in result.logos]
    assert "lavie" in fold(texts[0]).replace(" ", "") and texts[1:] == ["", ""]
    assert shapes.search(result)["logos"][0]["text"] == texts[0]
    service._parts.settings = service.settings.replace(read_text=0)
    assert all(logo.text == "" for logo in service.search.photo(photo, boxes=boxes).logos)


def test_a_wordmark_is_named_by_its_text_with_an_empty_logo_store(service):
    """A brand with no picture in the store: its name in the vocabulary is enough (issue: read the logo)."""
    service.labels.import_vocabulary("Heineken\nOrganic Valley\n")
    logo = wordmark("Heineken")
    (found,) = service.search.photo(logo).logos  # the whole image is the logo (the fixtures' detector)
    assert (found.prediction.label, found.prediction.named_by) == ("Heineken", "text")
    assert found.prediction.confidence >= service.settings.target_precision and found.neighbours == []
    assert shapes.logo(found)["named_by"] == "text"
    (generic,) = service.search.photo(wordmark("ORGANIC")).logos
    assert generic.prediction.label is None  # a generic word names nothing


def test_text_does_not_overrule_the_vote_and_a_store_whose_text_misleads_learns_it(service):
    # the store's human-labelled logos read "Heineken" but are labelled "Amstel": its text names are wrong
    for n in range(12):
        service.ingest.photo(wordmark("Heineken", 40 + n), labels=["Amstel"])
    service.labels.import_vocabulary("Heineken\n")
    (found,) = service.search.photo(wordmark("Heineken", 47)).logos
    assert (found.prediction.label, found.prediction.named_by) == ("Amstel", "vote")  # the vote named it: it stays
    precision = service.reading.evidence.refresh().precision  # what the background worker makes after a search
    assert (precision.right, precision.named) == (0, 12) and precision.probability < 0.7
    assert service.reading.text_evidence().precision == precision  # below the target: text names nothing in this store
    reads = []
    read = service._parts.background_reader.read
    service._parts.background_reader.read = lambda crops: reads.append(len(crops)) or read(crops)
    ids = [int(n.id) for n in found.neighbours if n.label == "Amstel"][:12]
    service.labels.bulk(ids, "Heineken")  # a person fixes the labels: the text was right after all
    relabelled = service.reading.evidence.refresh().precision
    assert (relabelled.right, relabelled.named) == (len(ids), 12) and reads == []  # matched again, not read again


def test_in_a_calibrated_store_text_that_agrees_with_the_vote_raises_its_probability(service):
    """Text as evidence (pipeline/text_evidence.py): measured on the store's own thumbnails, then heard by a search."""
    for size in range(36, 60, 2):
        service.ingest.photo(wordmark("Heineken", size), labels=["Heineken"])
        service.ingest.photo(wordmark("Amstel", size), labels=["Amstel"])
    service.calibration.fit()
    evidence = service.reading.evidence.refresh()  # what the background worker makes after a search
    assert evidence.right_agree > 0.8 * evidence.right and evidence.wrong_agree == 0
    assert evidence.ratio(agrees=True) > 10 and evidence.precision.named >= 20
    query = wordmark("Heineken", 51)
    heard = service.search.photo(query).logos[0].prediction
    service._parts.settings = service.settings.replace(read_text=0)
    vote = service.search.photo(query).logos[0].prediction
    assert heard.guess == vote.guess == "Heineken"
    assert heard.guess_probability > vote.guess_probability and heard.label == "Heineken"


def test_the_stored_logos_text_is_read_once_in_the_background_and_the_map_finds_logos_by_it(service):
    heineken = service.ingest.photo(wordmark("Heineken"), labels=["Heineken"])
    organic = service.ingest.photo(wordmark("Lait BIO"))
    service.ingest.photo(Image.new("RGB", (90, 60), (200, 30, 30)))  # reads nothing
    assert service.reading.store_texts.refresh() == 3
    assert service.reading.find_text("heine").ids == heineken and service.reading.find_text("bio").ids == organic
    assert service.reading.find_text("nothing").ids == [] and service.reading.find_text("bio").read == 3
    reads = []
    read = service._parts.background_reader.read
    service._parts.background_reader.read = lambda crops: reads.append(len(crops)) or read(crops)
    assert service.reading.evidence.refresh().precision.named == 1  # the sample's text comes from the store
    added = service.ingest.photo(wordmark("Biologique"))
    assert service.reading.store_texts.refresh() == 1 and reads == [1]  # only the new logo is read
    assert service.reading.find_text("BIO").ids == organic + added

    client = TestClient(create_app(service))
    response = dash_callback(
        client, [("map", "figure"), ("highlight-note", "children"), ("highlighted", "data")],
        [{"id": "label-search", "property": "value", "value": None},
         {"id": "text-search", "property": "value", "value": "bio"},
         {"id": "show-last", "property": "n_clicks", "value": None}],
        [{"id": "map-meta", "property": "data", "value": {"traces": 4}},
         {"id": "url", "property": "search", "value": ""}], "text-search.value")
    assert response["highlight-note"]["children"] == "2 logos reading 'bio'."


def test_an_import_proposes_what_the_text_names_and_records_so_until_a_person_decides(service):
    service.labels.import_vocabulary("Heineken\n")  # a name, and no logo of it
    (logo_id,) = service.ingest.annotate(wordmark("Heineken"), "heineken-photo", None)
    (group,) = service.review.queue()
    (item,) = group.items
    assert (group.label, item.id, item.proposed_by, item.stored) == ("Heineken", logo_id, "text", True)
    assert item.confidence >= service.settings.target_precision
    service.review.apply(ReviewVerdict(accept=[logo_id]), {logo_id: "Heineken"})
    (record,) = service._parts.store.get([logo_id])
    assert (record.label, record.label_source.value, record.proposed_by) == ("Heineken", "human", None)


def test_a_wordmark_the_detector_missed_is_found_by_its_text_and_named(service):
    photo = Image.new("RGB", (640, 320), (245, 245, 240))
    photo.paste((200, 30, 30), (20, 20, 120, 120))  # the one box the detector finds
    photo.paste(wordmark("Heineken"), (300, 180))
    photo.paste(wordmark("ORGANIC"), (300, 40))  # a generic word: no box
    service._parts.detector = GivenBoxesDetector([[20, 20, 120, 120]])
    service.labels.import_vocabulary("Heineken\n")
    found, by_text = service.search.photo(photo).logos
    assert found.found_by == "detector" and by_text.found_by == "text"
    assert by_text.box.x0 >= 300 and by_text.box.y0 >= 180 and by_text.box.x1 <= 300 + wordmark("Heineken").width
    assert (by_text.prediction.label, by_text.prediction.named_by) == ("Heineken", "text")
    assert shapes.logo(by_text)["found_by"] == "text" and "found_by" not in shapes.logo(found)
    assert len(service.search.photo(photo, boxes=[[20, 20, 120, 120]]).logos) == 1  # a person's boxes only
    # a line whose crop is not named in the end (a person never lets text name Amstel) is proposed, then left out
    service.labels.import_vocabulary("Amstel\n")
    service.labels.set_threshold("Amstel", 1.0)  # a vocabulary name with no logo yet
    assert service.labels.thresholds()["set"]["Amstel"] == 1.0
    with pytest.raises(NotFoundError, match="knows no label"):
        service.labels.set_threshold("Grolsch", 0.9)  # neither a logo's label nor the vocabulary's
    photo.paste(wordmark("Amstel"), (60, 200))
    service._parts.settings = service.settings.replace(read_text=3)  # the proposed crops are read too
    answers = [(logo.found_by, logo.prediction.label) for logo in service.search.photo(photo).logos]
    assert answers == [("detector", None), ("text", "Heineken")], answers
