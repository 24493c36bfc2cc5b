"""Every kind of named part sits in one registry type: a name taken twice is refused, an unknown one is an error
that lists the known ones and says whose fault it is, and each part is described."""

from __future__ import annotations

import pytest

from pipeline.datasets import LOADERS
from pipeline.detectors import DETECTORS
from pipeline.embedders import EMBEDDERS
from pipeline.errors import BadInputError, ConfigError, DatasetError, DetectorError, EmbedderError
from pipeline.exports import EXPORTERS
from pipeline.vector_backends import INDEX_BACKENDS
from pipeline.registry import Registry

REGISTRIES = [(EMBEDDERS, EmbedderError), (DETECTORS, DetectorError), (INDEX_BACKENDS, ConfigError),
              (EXPORTERS, BadInputError), (LOADERS, DatasetError)]


@pytest.mark.parametrize(("registry", "error"), REGISTRIES, ids=lambda value: getattr(value, "kind", ""))
def test_each_registry_refuses_a_taken_name_and_names_the_known_ones(registry, error):
    assert isinstance(registry, Registry)
    taken = registry.names()[0]
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(taken, registry.get(taken))
    with pytest.raises(error, match=f"unknown {registry.kind} 'no-such'; known: {taken}"):
        registry.get("no-such")
    described = registry.describe()
    assert list(described) == registry.names() and all(described.values()), described


def test_the_kinds_of_parts_are_the_documented_ones():
    assert {"annoy", "exact", "milvus"} == set(INDEX_BACKENDS)
    assert {"coco", "yolo", "labelme", "csv", "parquet"} == set(EXPORTERS)
    assert {"yolo", "coco"} == set(LOADERS)
    assert {"logo-detector", "onnx", "whole-image", "boxes"} == set(DETECTORS)
    assert "efficientnet-lite0-logo-colour" in EMBEDDERS
