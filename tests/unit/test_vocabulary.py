"""A vocabulary of brand names: labels that exist before any logo of them, imported all or nothing, listed with
the labels logos carry, by the CLI and the API."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.cli import run
from pipeline.errors import BadInputError
from pipeline.vocabulary import parse_vocabulary
from web.api import build_api
from web.auth import AdminAuth
from web.errors import install_error_handlers

GOOD = "Coca-Cola\tCoke|CocaCola\n\n# water\nLavie\nCoca-Cola\tCoca Cola\n".encode()


@pytest.mark.parametrize(("text", "line"), [
    (b"Heineken\nLavie\t\tLa Vie\n", "line 2: a label and its aliases are parted by one tab"),
    (b"Heineken\n\tLa Vie\n", "line 2: aliases without a label"),
    (b"Heineken\nLavie\tLa Vie||LaVie\n", "line 2: an empty alias"),
    (b"Heineken\nAquafina\nLa\x07vie\n", "line 3: a label is one line of text"),
    (b"Heineken\n\xff\xfeLavie\n", "line 2: not UTF-8"),
])
def test_a_malformed_line_is_named_and_nothing_of_the_file_is_stored(service, text, line):
    with pytest.raises(BadInputError, match=line):
        service.labels.import_vocabulary(text)
    assert service.labels.vocabulary() == []


def test_labels_exist_before_their_logos_and_a_reimport_changes_nothing(service):
    assert [(e.label, e.aliases) for e in parse_vocabulary(GOOD)] == [("Coca-Cola", ("Coke", "CocaCola", "Coca Cola")),
                                                                     ("Lavie", ())]
    assert service.labels.import_vocabulary(GOOD) == (2, 2)
    service.ingest.photo(Image.new("RGB", (32, 32), "red"), labels=["Heineken"])
    assert service.labels.import_vocabulary(GOOD) == (0, 3)  # idempotent; Heineken comes from its logo
    assert service.labels.import_vocabulary("Lavie\tLa Vie\n") == (0, 3)  # a known label gains an alias
    listed = {e.label: (e.aliases, e.logos) for e in service.labels.vocabulary()}
    assert listed == {"Coca-Cola": (("Coke", "CocaCola", "Coca Cola"), 0), "Heineken": ((), 1),
                      "Lavie": (("La Vie",), 0)}
    assert service.labels.in_use() == ["Heineken"]  # the labels logos carry are still apart


def test_the_cli_and_the_api_import_and_list_the_same(service, tmp_path, capsys):
    vocabulary = tmp_path / "brands.tsv"
    vocabulary.write_bytes(GOOD)
    args = ["--data-dir", str(service.settings.data_dir), "--detector", "whole-image", "-q"]
    assert run([*args, "labels", "import", str(vocabulary)]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 2, "labels": 2}
    vocabulary.write_bytes(b"Fanta\n\tno label\n")
    assert run([*args, "labels", "import", str(vocabulary)]) == 1
    assert "line 2: aliases without a label" in capsys.readouterr().err
    assert run([*args, "labels", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_api(service, AdminAuth("t")))
    client = TestClient(app)
    assert client.get("/api/v1/labels").json() == listed
    assert client.post("/api/v1/labels", content=b"Fanta\n").status_code == 401  # a write: the token
    refused = client.post("/api/v1/labels", content=b"Fanta\n\tx\n", headers={"X-Admin-Token": "t"})
    assert refused.status_code == 400 and "line 2" in refused.json()["detail"]
    answer = client.post("/api/v1/labels", content=b"Fanta\tFanta Orange\n", headers={"X-Admin-Token": "t"})
    assert answer.json() == {"added": 1, "labels": 3}
    assert {"label": "Fanta", "aliases": ["Fanta Orange"], "logos": 0} in client.get("/api/v1/labels").json()["labels"]
