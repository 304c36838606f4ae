"""``ViT``: the vision-transformer torso behind ``EncoderConfig(kind="vit")``.

``ViT(config)(images [b, h, w, c] float32) -> [b, width]``, the layout of big_vision's ViT (which
openpi's SigLIP follows; Dosovitskiy et al. 2021):

1. patch embedding: a ``patch_size``×``patch_size`` conv at stride ``patch_size`` (kernel
   ``[p, p, c, width]`` + bias, the parameters of ``nn.Conv``), computed as a reshape of the image
   into patches and one matmul: exact, and on XLA:CPU it avoids the conv path (``vibe.networks.cnn``);
2. a position embedding, learned (``[1, n, width]``, std ``1/√width``) or fixed 2-D sin-cos
   (``posemb_sincos_2d``), added before the optional class token;
3. ``depth`` pre-LN blocks: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``, MLP ``width → mlp_dim → width``
   with gelu;
4. a final LayerNorm, then the mean of the tokens (``gap``) or the class token (``cls``).

Dimension names: ``n`` tokens (``(h / p) · (w / p)``, plus one with ``cls``), ``d`` the width.

The residual stream's batch dimension is pinned to all devices of the context mesh
(``vibe.sharding.mesh.activation_sharding_constraint``, a no-op without one), so under an FSDP
mesh the compiler gathers the split kernels rather than the activations. ``FSDP_DEMO`` in
``vibe.networks.config`` is a config whose kernels are large enough to be split.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.networks.config import ViTConfig
from vibe.sharding.mesh import activation_sharding_constraint

# big_vision / MoCo v3's temperature: frequencies 1 ... 1/10000 across the d/4 channels of each axis.
SINCOS_TEMPERATURE = 10_000.0


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = SINCOS_TEMPERATURE) -> jax.Array:
    """Fixed 2-D position embedding ``[1, h·w, width]`` (MoCo v3 / big_vision ``posemb_sincos_2d``).

    Token ``(y, x)`` (row-major) gets ``[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]`` with
    ``ω_i = temperature^(-i / (width/4 - 1))``, ``i = 0 … width/4 - 1``; ``width`` divisible by 4, at least 8.
    """
    if width % 4 or width < 8:
        raise ValueError(f"sincos2d position embedding needs a width divisible by 4 and at least 8, got {width}")
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
    y = np.einsum("m,d->md", y.reshape(-1), omega)
    x = np.einsum("m,d->md", x.reshape(-1), omega)
    return jnp.asarray(np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None], jnp.float32)


class PatchEmbed(nn.Module):
    """``images [b, h, w, c] -> tokens [b, h/p · w/p, d]``: the stride-``p`` ``p``×``p`` conv, as patches + matmul."""

    patch_size: int
    width: int

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b h w c"]) -> at.Float[at.Array, "b n d"]:
        p = self.patch_size
        b, h, w, c = x.shape
        if h % p or w % p:
            raise ValueError(
                f"ViTConfig.patch_size={p} does not tile {h}x{w} images; use a divisor of both (or resize the images)."
            )
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (p, p, c, self.width))
        bias = self.param("bias", nn.initializers.zeros, (self.width,))
        patches = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)  # [b, h/p, w/p, p, p, c]
        return patches.reshape(b, (h // p) * (w // p), p * p * c) @ kernel.reshape(p * p * c, self.width) + bias


class MLPBlock(nn.Module):
    """``[..., d] -> Dense(mlp_dim) -> gelu -> Dense(d)``."""

    mlp_dim: int

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b n d"]) -> at.Float[at.Array, "b n d"]:
        d = x.shape[-1]
        x = nn.Dense(self.mlp_dim, kernel_init=nn.initializers.xavier_uniform())(x)
        x = activation_sharding_constraint(nn.gelu(x))
        return nn.Dense(d, kernel_init=nn.initializers.xavier_uniform())(x)


class EncoderBlock(nn.Module):
    """One pre-LN transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b n d"]) -> at.Float[at.Array, "b n d"]:
        y = nn.LayerNorm(name="ln_attention")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(), name="attention"
        )(y, y)
        x = activation_sharding_constraint(x + y)
        y = nn.LayerNorm(name="ln_mlp")(x)
        y = MLPBlock(self.mlp_dim, name="mlp")(y)
        return activation_sharding_constraint(x + y)


class ViT(nn.Module):
    """``images [b, h, w, c] -> features [b, width]``; see the module docstring.

    Takes float images; the ``Encoder`` turns uint8 / bool observations into floats before this.
    """

    config: ViTConfig

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b h w c"]) -> at.Float[at.Array, "b d"]:
        c = self.config
        grid = (x.shape[1] // c.patch_size, x.shape[2] // c.patch_size)
        x = PatchEmbed(c.patch_size, c.width, name="embedding")(x)
        if c.posemb == "learned":
            init = nn.initializers.normal(stddev=1.0 / np.sqrt(c.width))
            x = x + self.param("pos_embedding", init, (1, x.shape[1], c.width))
        else:
            x = x + posemb_sincos_2d(*grid, c.width)
        if c.pool == "cls":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, c.width))
            x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, c.width)), x], axis=1)
        x = activation_sharding_constraint(x)
        for i in range(c.depth):
            x = EncoderBlock(c.num_heads, c.mlp_dim, name=f"block_{i}")(x)
        x = nn.LayerNorm(name="encoder_norm")(x)
        return x[:, 0] if c.pool == "cls" else x.mean(axis=1)
