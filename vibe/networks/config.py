"""Network configs: the torso (``EncoderConfig``) each algorithm config holds.

Plain Python, no JAX: the config layer imports these. The modules they describe
live in ``encoder.py`` (dispatch), ``mlp.py``, ``cnn.py`` and ``vit.py``.
"""

import dataclasses
from typing import Literal

# The hidden activations the networks know; ``vibe.networks.mlp.ACTIVATIONS`` maps each name to its function.
ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "elu")

EncoderKind = Literal["mlp", "cnn", "vit"]


def _positive_ints(owner: str, name: str, values: tuple[int, ...], *, allow_empty: bool) -> None:
    if (not values and not allow_empty) or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
        raise ValueError(f"{owner}.{name} must be positive ints, got {values!r}.")


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """A stack of conv layers (``channels[i]`` filters of ``kernel_sizes[i]`` at ``strides[i]``), then flatten.

    The default is a small MinAtar-size torso (one 16-filter 3×3 conv, as PureJaxRL's MinAtar CNN);
    Nature-DQN is ``channels=(32, 64, 64), kernel_sizes=(8, 4, 3), strides=(4, 2, 1), padding="VALID"``.
    """

    channels: tuple[int, ...] = (16,)  # filters per conv layer
    kernel_sizes: tuple[int, ...] = (3,)  # square kernel size per conv layer
    strides: tuple[int, ...] = (1,)  # stride per conv layer
    padding: Literal["SAME", "VALID"] = "SAME"  # conv padding of every layer
    # how each conv is computed (same parameters and outputs either way): auto is slices on CPU, lax elsewhere
    # (vibe/networks/cnn.py has the measurements); lax is flax's nn.Conv; patches; slices (im2col by hand)
    conv_impl: Literal["auto", "lax", "patches", "slices"] = "auto"

    def __post_init__(self) -> None:
        for name in ("channels", "kernel_sizes", "strides"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            _positive_ints("CNNConfig", name, getattr(self, name), allow_empty=False)
        if not len(self.channels) == len(self.kernel_sizes) == len(self.strides):
            raise ValueError(
                f"CNNConfig.channels, kernel_sizes and strides need one entry per layer; got {len(self.channels)}, "
                f"{len(self.kernel_sizes)} and {len(self.strides)}."
            )
        if self.padding not in ("SAME", "VALID"):
            raise ValueError(f"CNNConfig.padding={self.padding!r} must be SAME or VALID.")
        if self.conv_impl not in ("auto", "lax", "patches", "slices"):
            raise ValueError(f"CNNConfig.conv_impl={self.conv_impl!r} must be auto, lax, patches or slices.")


# PureJaxRL's MinAtar torso (one 16-filter 3×3 SAME conv), the default: 1,600 features on 10×10 images.
MINATAR_CNN = CNNConfig()
# Mnih et al. 2015 (Nature DQN): 32 8×8/4, 64 4×4/2, 64 3×3/1, VALID: 3,136 features on 84×84 images.
NATURE_CNN = CNNConfig(channels=(32, 64, 64), kernel_sizes=(8, 4, 3), strides=(4, 2, 1), padding="VALID")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """A vision transformer: conv patch embedding, position embedding, pre-LN blocks, pooling."""

    patch_size: int = 2  # square patch side in pixels (the patch-embedding conv's kernel and stride)
    width: int = 64  # token width
    depth: int = 2  # transformer blocks
    num_heads: int = 4  # attention heads; must divide width
    mlp_dim: int = 128  # hidden width of each block's MLP
    posemb: Literal["learned", "sincos2d"] = "learned"  # position embedding
    pool: Literal["gap", "cls"] = "gap"  # global average pooling of the tokens, or a class token

    def __post_init__(self) -> None:
        for name in ("patch_size", "width", "depth", "num_heads", "mlp_dim"):
            _positive_ints("ViTConfig", name, (getattr(self, name),), allow_empty=False)
        if self.width % self.num_heads:
            raise ValueError(f"ViTConfig.num_heads={self.num_heads} must divide width={self.width}.")
        if self.posemb not in ("learned", "sincos2d"):
            raise ValueError(f"ViTConfig.posemb={self.posemb!r} must be learned or sincos2d.")
        if self.posemb == "sincos2d" and (self.width % 4 or self.width < 8):
            raise ValueError(
                f"ViTConfig.width={self.width} must be a multiple of 4 and at least 8 for posemb sincos2d "
                "(a quarter of the channels per sin/cos and axis)."
            )
        if self.pool not in ("gap", "cls"):
            raise ValueError(f"ViTConfig.pool={self.pool!r} must be gap or cls.")


# A ViT whose kernels FSDP splits (vibe.sharding.fsdp splits leaves of >= 4 MiB with >= 2 dims): each block's
# MLP kernels are 1024x4096 float32 (16 MiB) and its attention q/k/v/out kernels 1024x16x64 (4 MiB). Two blocks,
# 25.2M parameters (~100 MiB; 8x8x3 images): big enough to shard, small enough for a 4-device CPU test.
FSDP_DEMO = ViTConfig(patch_size=2, width=1024, depth=2, num_heads=16, mlp_dim=4096, posemb="sincos2d")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The torso from observations to features; the algorithm puts heads for the action space on top.

    ``mlp`` flattens the observation and applies ``hidden_sizes``; ``cnn`` and ``vit`` read images
    ``[h, w, c]`` (uint8 and bool become floats inside the jitted step) and then apply ``hidden_sizes``
    to the flattened (cnn) or pooled (vit) features.
    """

    kind: EncoderKind = "mlp"  # torso: mlp (flat observations), cnn or vit (images)
    hidden_sizes: tuple[int, ...] = (64, 64)  # dense layers (after the cnn/vit torso, if any)
    activation: str = "tanh"  # activation of the dense and conv layers, one of ACTIVATIONS
    cnn: CNNConfig = dataclasses.field(default_factory=CNNConfig)  # used when kind is cnn
    vit: ViTConfig = dataclasses.field(default_factory=ViTConfig)  # used when kind is vit

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.kind not in ("mlp", "cnn", "vit"):
            raise ValueError(f"EncoderConfig.kind={self.kind!r} is unknown; use mlp, cnn or vit.")
        _positive_ints("EncoderConfig", "hidden_sizes", self.hidden_sizes, allow_empty=True)
        if self.kind == "mlp" and not self.hidden_sizes:
            raise ValueError("EncoderConfig.hidden_sizes must not be empty for an mlp encoder, e.g. (64, 64).")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"EncoderConfig.activation={self.activation!r} is unknown; use one of {ACTIVATIONS}.")
