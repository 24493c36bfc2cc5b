"""The store: labels, human-over-machine, model mixing refusal, and crash safety under kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import BadInputError, LogoNotFoundError, ModelMismatchError, StoreError
from pipeline.store import LogoStore, NewLogo
from pipeline.types import LabelSource
from tests.conftest import ROOT, unit_vectors



def add(store: LogoStore, n: int, label: str | None = None, model: str = "m", dim: int = 8, seed: int = 0,
        source: LabelSource | None = None) -> list[int]:
    logos = [NewLogo(label=label, label_source=source) for _ in range(n)]
    return store.add(logos, unit_vectors(n, dim, seed), model_id=model)


def test_add_get_and_vectors_roundtrip(tmp_path):
    store = LogoStore(tmp_path)
    vectors = unit_vectors(3, 8)
    ids = store.add([NewLogo(label=" Coca  Cola "), NewLogo(), NewLogo(crop=Image.new("RGB", (300, 200)))],
                    vectors, model_id="m")
    assert ids == [1, 2, 3]
    records = store.get([3, 1])
    assert [r.id for r in records] == [3, 1]
    assert records[1].label == "Coca Cola" and records[1].label_source is LabelSource.HUMAN
    assert records[0].label is None and records[0].model_id == "m"
    np.testing.assert_array_equal(store.vectors(ids), vectors)
    assert store.thumbnail(3)[:4] == b"RIFF" and store.thumbnail(1) is None
    with pytest.raises(LogoNotFoundError, match="unknown logo id"):
        store.vectors([99])


def test_machine_labels_never_replace_human_labels(tmp_path):
    store = LogoStore(tmp_path)
    human = add(store, 2, label="lidl", source=LabelSource.HUMAN)
    blank = add(store, 2, seed=1)
    assert len(store.set_label(human + blank, "aldi", LabelSource.MACHINE).ids) == 2
    labels = store.labels(human + blank)
    assert [labels[i] for i in human] == [("lidl", LabelSource.HUMAN)] * 2
    assert [labels[i] for i in blank] == [("aldi", LabelSource.MACHINE)] * 2
    assert len(store.set_label(blank[:1], "rewe", LabelSource.HUMAN).ids) == 1
    assert len(store.set_label(blank[:1], "x", LabelSource.MACHINE).ids) == 0
    assert len(store.set_label(human[:1], None, LabelSource.HUMAN).ids) == 1
    assert store.labels(human[:1])[human[0]] == (None, None)
    assert store.stats().human_labelled == 2 and store.stats().machine_labelled == 1


def test_mixing_models_is_refused(tmp_path):
    store = LogoStore(tmp_path)
    add(store, 2, model="efficientnet-lite0")
    with pytest.raises(ModelMismatchError, match="refusing clip-vit-b32"):
        add(store, 1, model="clip-vit-b32")
    with pytest.raises(ModelMismatchError):
        add(store, 1, model="efficientnet-lite0", dim=16)
    assert store.count() == 2


def test_bad_input_is_refused_and_loses_nothing(tmp_path):
    store = LogoStore(tmp_path)
    add(store, 2)
    with pytest.raises(StoreError, match="expected 2 vectors"):
        store.add([NewLogo(), NewLogo()], unit_vectors(3, 8), model_id="m")
    with pytest.raises(StoreError, match="finite"):
        store.add([NewLogo()], np.full((1, 8), np.nan, np.float32), model_id="m")
    with pytest.raises(BadInputError, match="text"):
        store.add([NewLogo(label=5)], unit_vectors(1, 8), model_id="m")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="label source"):
        store.set_label([1], "x", "robot")
    assert store.count() == 2


def test_thresholds(tmp_path):
    store = LogoStore(tmp_path)
    store.set_threshold("lidl", 0.8)
    assert store.thresholds() == {"lidl": 0.8}
    with pytest.raises(BadInputError):
        store.set_threshold("lidl", 1.5)
    store.set_threshold("lidl", None)
    assert store.thresholds() == {}


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from pipeline.store import LogoStore, NewLogo
    store = LogoStore(sys.argv[1])
    batch = 0
    while True:
        rng = np.random.default_rng(batch)
        vectors = rng.normal(size=(7, 64)).astype(np.float32)
        ids = store.add([NewLogo(label=f"b{batch}") for _ in range(7)], vectors, model_id="m")
        sys.stdout.write(" ".join(map(str, (batch, *ids))) + "\\n")  # one write: a kill cannot cut the line,
        sys.stdout.flush()  # even with PYTHONUNBUFFERED (print writes each piece apart then)
        batch += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.4])
def test_kill_9_mid_add_leaves_every_committed_logo(tmp_path, delay):
    """A writer adding in a loop is killed at an arbitrary instant; all it committed is intact.

    The delay runs from its first commit, so a slow start (a busy machine) does not matter.
    """
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = process.stdout.readline()
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate()
    committed = [list(map(int, line.split())) for line in (first + output).splitlines()]
    assert committed, "the writer died before its first commit"
    store = LogoStore(tmp_path)
    for batch, *ids in committed:
        expected = np.random.default_rng(batch).normal(size=(7, 64)).astype(np.float32)
        np.testing.assert_array_equal(store.vectors(ids), expected)
        assert {label for label, _ in store.labels(ids).values()} == {f"b{batch}"}
    # whatever the store reports is readable, and the next add works
    everything = [record.id for record in store.get(range(1, store.max_id() + 1))]
    assert len(store.vectors(everything)) == store.count() >= 7 * len(committed)
    assert store.add([NewLogo()], np.ones((1, 64), np.float32), model_id="m")
