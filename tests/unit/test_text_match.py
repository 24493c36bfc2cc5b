"""Which label the text on a logo names (pipeline/reading.py: Vocabulary): whole words, OCR slips forgiven on long
names only, generic packaging words never."""

from __future__ import annotations

import pytest

from pipeline.reading import GENERIC_WORDS, Vocabulary, fold

VOCABULARY = Vocabulary.of([("Coca-Cola", ("Coke",)), ("Lavie", ()), ("VinhHao", ("Vinh Hao",)), ("Aquafina", ()),
                            ("KFC", ()), ("Zero", ()), ("Organic", ("Bio",))])


@pytest.mark.parametrize("text, label", [
    ("Coca-Cola Registered Trade Mark", "Coca-Cola"),
    ("COCA COLA", "Coca-Cola"),
    ("cocacola", "Coca-Cola"),
    ("Enjoy Coke", "Coca-Cola"),
    ("NUOC KHOANG THIEN NHIEN laVie 350ml", "Lavie"),
    ("VĨNH HẢO nước khoáng", "VinhHao"),
    ("AQUAF1NA purified", "Aquafina"),  # an OCR slip in a long name
    ("KFC", "KFC"),
])
def test_text_names_the_label_it_reads(text, label):
    assert VOCABULARY.match(text).label == label


@pytest.mark.parametrize("text", [
    "",
    "12 FL OZ",
    "ZERO SUGAR",  # a label spelt like a generic word is never named by it
    "organic bio",
    "Perfect Taste since 1886",
    "KFD",  # a short name must be read exactly
    "lavienne",  # not inside a longer word
    "Aquarius",
])
def test_generic_words_and_near_misses_name_nothing(text):
    assert VOCABULARY.match(text) is None


def test_folding_and_the_generic_list():
    assert fold("Ḍasani®  WATER") == "dasani water"
    assert {"zero", "organic", "fl", "oz", "taste"} <= GENERIC_WORDS
    assert len(VOCABULARY) == 5  # Zero and Organic (and its alias Bio) are generic: no text can name them
