"""``ViT``: the vision-transformer torso behind ``EncoderConfig(kind="vit")``.

Placeholder shape only: ``ViT(config)(images [b, h, w, c] float32) -> [b, width]``.
"""

import flax.linen as nn

from vibe.core import typing as at
from vibe.networks.config import ViTConfig


class ViT(nn.Module):
    """Patch embedding and mean pooling (the transformer blocks are still to come)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: at.Float[at.Array, "b h w c"]) -> at.Float[at.Array, "b d"]:
        p = self.config.patch_size
        x = nn.Conv(self.config.width, (p, p), (p, p), padding="VALID")(x)
        return x.reshape((x.shape[0], -1, x.shape[-1])).mean(axis=1)
