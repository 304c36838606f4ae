"""``WrapperConfig``: the observation wrappers a run puts on its env (plain Python, no JAX).

The config layer composes it into ``TrainConfig.wrappers`` (flags ``--wrappers.frame-stack 4``);
``vibe.envs.registry.make(env_id, wrappers)`` applies it to the plain env in a fixed order,
innermost first: crop → resize → grayscale → invert → frame stack, all below the auto-reset that training adds
(so a stack never holds frames of two episodes). The defaults change nothing.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class WrapperConfig:
    """Observation wrappers of an image env, applied in field order (see the module docstring)."""

    # (top, left, height, width) of the window of each image to keep; None keeps the whole image
    crop: tuple[int, int, int, int] | None = None
    # (height, width) to resize images to with aspect-preserving padding; None keeps the env's size
    resize: tuple[int, int] | None = None
    grayscale: bool = False  # RGB to one luma channel (ITU-R BT.601 weights); needs 3-channel images
    invert: bool = False  # the negative image (uint8 255 - x): a white background becomes black
    frame_stack: int = 1  # observations are the last N frames concatenated on the channel axis (1: off)

    def __post_init__(self) -> None:
        if self.crop is not None:
            crop = tuple(self.crop)
            if (
                len(crop) != 4
                or any(not isinstance(v, int) or isinstance(v, bool) for v in crop)
                or min(crop[:2]) < 0
                or min(crop[2:]) < 1
            ):
                raise ValueError(
                    "WrapperConfig.crop must be four ints (top, left, height, width), top and left >= 0, height and "
                    f"width >= 1, or None, got {self.crop!r}."
                )
            object.__setattr__(self, "crop", crop)
        if self.resize is not None:
            resize = tuple(self.resize)
            if len(resize) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in resize):
                raise ValueError(
                    f"WrapperConfig.resize must be two positive ints (height, width) or None, got {self.resize!r}."
                )
            object.__setattr__(self, "resize", resize)
        if not isinstance(self.grayscale, bool):
            raise ValueError(f"WrapperConfig.grayscale must be True or False, got {self.grayscale!r}.")
        if not isinstance(self.invert, bool):
            raise ValueError(f"WrapperConfig.invert must be True or False, got {self.invert!r}.")
        if not isinstance(self.frame_stack, int) or isinstance(self.frame_stack, bool) or self.frame_stack < 1:
            raise ValueError(
                f"WrapperConfig.frame_stack must be a positive int (1: no stacking), got {self.frame_stack!r}."
            )

    @property
    def is_identity(self) -> bool:
        """True when no wrapper is applied."""
        plain = not self.grayscale and not self.invert and self.frame_stack == 1
        return self.crop is None and self.resize is None and plain
