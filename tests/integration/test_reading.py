"""Reading the logo (pipeline/reading.py): the OCR reads a wordmark and a real photo's logo, the text names its
label from the vocabulary alone, and a search gives each logo its text, for the largest logos only."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from pipeline import shapes
from pipeline.reading import TextReader, Vocabulary, fold
from tests.conftest import ROOT

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
    read = service._parts.reader.read
    service._parts.reader.read = lambda crops: reads.append(len(crops)) or read(crops)
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
