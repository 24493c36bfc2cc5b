"""The text kept per stored logo (pipeline/logo_texts.py): read once, found by word prefixes, never a wildcard."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.store import LogoStore, NewLogo


def _store(tmp_path, count: int, thumbnails: bool = True) -> tuple[LogoStore, list[int]]:
    store = LogoStore(tmp_path)
    logos = [NewLogo(crop=Image.new("RGB", (8, 8)) if thumbnails else None) for _ in range(count)]
    return store, store.add(logos, np.eye(count, 4, dtype=np.float32), model_id="demo")


def test_only_logos_with_a_thumbnail_and_no_text_are_unread_oldest_first(tmp_path):
    store, ids = _store(tmp_path, 4)
    store.add([NewLogo()], np.eye(1, 4, dtype=np.float32), model_id="demo")  # a vector alone: nothing to read
    assert store.unread_ids(10) == ids and store.unread_ids(2) == ids[:2]
    store.save_texts([(ids[1], "Lavie"), (ids[2], "")])
    assert store.unread_ids(10) == [ids[0], ids[3]] and store.text_progress() == (2, 4)
    assert store.texts(ids) == {ids[1]: "Lavie", ids[2]: ""}


def test_text_is_found_by_word_prefixes_case_and_accents_aside_and_wildcards_are_letters(tmp_path):
    store, ids = _store(tmp_path, 5)
    store.save_texts(zip(ids, ["Nước khoáng LaVie", "100% BIO", "bio_logic", "Coca-Cola Zero", "abio"], strict=True))
    assert store.find_text("NUOC") == ids[:1] and store.find_text("lavie nuoc") == ids[:1]
    assert store.find_text("bio") == ids[1:3]  # "abio" has no word starting with "bio"
    assert store.find_text("%") == store.find_text("_") == []  # folded away: never a wildcard that finds all
    assert store.find_text("coca zero") == ids[3:4]
    assert store.find_text("  ") == [] and store.find_text("bio", limit=1) == ids[1:2]
