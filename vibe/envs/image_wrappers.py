"""Pixel-observation wrappers: ``Crop``, ``ResizeWithPad``, ``Grayscale``, ``Invert``, ``NormalizeImage``,
``FrameStack``.

Each wraps a single env (as in wrappers.py) and updates ``observation_space``.
The intended stack, innermost first::

    env = FrameStack(NormalizeImage(Grayscale(ResizeWithPad(PixelCartPole(), 84, 84))), 4)
    train_env = wrappers.vectorize(wrappers.for_training(env), num_envs)

``FrameStack`` must sit *below* ``AutoReset`` (inside ``for_training``): then an
automatic reset calls ``FrameStack.reset``, so the new episode's stack holds
only its reset frame, and ``info["final_obs"]`` (taken by ``AutoReset`` from
the step that ended the episode) holds only that episode's frames. Above
``AutoReset`` the stack would mix two episodes, so ``FrameStack`` refuses an
env whose timesteps already carry ``final_obs``.

The stateless wrappers (crop, resize, grayscale, invert, normalise) also map
``info["final_obs"]`` when they find it, so they are correct at either level.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import image, spaces
from vibe.envs.wrappers import Wrapper


def _image_space(space: spaces.Space, wrapper: str) -> spaces.Image:
    if not isinstance(space, spaces.Image):
        raise ValueError(f"{wrapper} needs an env with an Image observation space, got {space!r}.")
    return space


def _float_low(space: spaces.Image) -> float | None:
    return float(space.low.flat[0]) if space.dtype.kind == "f" else None


@dataclasses.dataclass(frozen=True)
class ObservationWrapper(Wrapper):
    """Applies ``observe`` to ``obs`` (and to ``info["final_obs"]`` when present) on reset and step."""

    def observe(self, obs: at.Array) -> at.Array:
        """One observation (or a batch with leading axes) of the inner env -> this env's."""
        raise NotImplementedError

    def _map(self, timestep: TimeStep) -> TimeStep:
        info = dict(timestep.info)
        if "final_obs" in info:
            info["final_obs"] = self.observe(info["final_obs"])
        return dataclasses.replace(timestep, obs=self.observe(timestep.obs), info=info)

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        state, timestep = self.env.reset(key, params)
        return state, self._map(timestep)

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        state, timestep = self.env.step(key, state, action, params)
        return state, self._map(timestep)


@dataclasses.dataclass(frozen=True)
class Crop(ObservationWrapper):
    """Keeps the ``[height, width]`` window of each image whose top-left pixel is ``(top, left)``; dtype kept.

    For a region of interest: the rows or columns a camera always sees as background cost a network
    compute and tell it nothing.

    Attributes:
        top: first row kept.
        left: first column kept.
        height: rows kept.
        width: columns kept.
    """

    top: int
    left: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for field, least in (("top", 0), ("left", 0), ("height", 1), ("width", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                kind = "a non-negative" if least == 0 else "a positive"
                raise ValueError(f"Crop.{field} must be {kind} int, got {value!r}.")

    def observe(self, obs: at.Array) -> at.Array:
        return obs[..., self.top : self.top + self.height, self.left : self.left + self.width, :]

    def observation_space(self, params: Any) -> spaces.Image:
        space = _image_space(self.env.observation_space(params), "Crop")
        if self.top + self.height > space.height or self.left + self.width > space.width:
            raise ValueError(
                f"Crop rows {self.top}..{self.top + self.height - 1}, columns {self.left}.."
                f"{self.left + self.width - 1} fall outside the {space.height}x{space.width} image"
            )
        return spaces.Image(self.height, self.width, space.channels, space.dtype, low=_float_low(space))


@dataclasses.dataclass(frozen=True)
class ResizeWithPad(ObservationWrapper):
    """Resizes ``[h, w, c]`` uint8/float images to ``[height, width, c]`` with ``image.resize_with_pad``.

    Aspect ratio kept, padding 0 (uint8) or -1 (float); float images come out in ``[-1, 1]``.

    Attributes:
        height: target height in pixels.
        width: target width in pixels.
    """

    height: int
    width: int

    def __post_init__(self) -> None:
        for field in ("height", "width"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ResizeWithPad.{field} must be a positive int, got {value!r}.")

    def observe(self, obs: at.Array) -> at.Array:
        return image.resize_with_pad(obs, self.height, self.width)

    def observation_space(self, params: Any) -> spaces.Image:
        space = _image_space(self.env.observation_space(params), "ResizeWithPad")
        if space.dtype != np.uint8 and space.dtype.kind != "f":
            raise ValueError(f"ResizeWithPad resizes uint8 or float images, got {space!r}.")
        low = None if space.dtype == np.uint8 else -1.0  # float content is clipped to [-1, 1] and padded with -1
        return spaces.Image(self.height, self.width, space.channels, space.dtype, low=low)


@dataclasses.dataclass(frozen=True)
class Grayscale(ObservationWrapper):
    """RGB ``[h, w, 3]`` to luma ``[h, w, 1]`` with ITU-R BT.601 weights (0.299, 0.587, 0.114); dtype kept."""

    def observe(self, obs: at.Array) -> at.Array:
        return image.grayscale(obs)

    def observation_space(self, params: Any) -> spaces.Image:
        space = _image_space(self.env.observation_space(params), "Grayscale")
        if space.channels != 3:
            raise ValueError(f"Grayscale needs RGB images (3 channels), got {space!r}; apply it before FrameStack.")
        return spaces.Image(space.height, space.width, 1, space.dtype, low=_float_low(space))


@dataclasses.dataclass(frozen=True)
class Invert(ObservationWrapper):
    """The negative of each image (``image.invert``): uint8 ``255 - x``, bool ``~x``, floats ``low + high - x``."""

    def observe(self, obs: at.Array) -> at.Array:
        if obs.dtype.kind != "f":
            return image.invert(obs)
        space = self.observation_space(self.default_params)  # float bounds come from the space
        return image.invert(obs, float(space.low.flat[0]), float(space.high.flat[0]))

    def observation_space(self, params: Any) -> spaces.Image:
        return _image_space(self.env.observation_space(params), "Invert")


@dataclasses.dataclass(frozen=True)
class NormalizeImage(ObservationWrapper):
    """uint8 ``[0, 255]`` pixels to float32 ``[-1, 1]`` (``x / 255 * 2 - 1``: 0 -> -1, 255 -> 1)."""

    def observe(self, obs: at.Array) -> at.Array:
        return image.to_signed_unit(obs)

    def observation_space(self, params: Any) -> spaces.Image:
        space = _image_space(self.env.observation_space(params), "NormalizeImage")
        if space.dtype != np.uint8:
            raise ValueError(f"NormalizeImage maps uint8 pixels to [-1, 1], got {space!r}.")
        return spaces.Image(space.height, space.width, space.channels, np.float32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FrameStackState:
    """State of ``FrameStack``: the inner state and the last ``num_frames`` observations, stacked."""

    env_state: Any
    frames: at.Array  # [..., c * num_frames], oldest frame first


@dataclasses.dataclass(frozen=True)
class FrameStack(Wrapper):
    """Observations are the last ``num_frames`` frames concatenated on the channel (last) axis.

    ``[h, w, c]`` frames give ``[h, w, c * num_frames]``, oldest first: channels
    ``[c * (num_frames - 1):]`` are the newest frame. ``reset`` fills the stack with
    copies of the first frame, so a stack never holds frames of two episodes as
    long as this wrapper is below ``AutoReset`` (see the module docstring). Works
    on any ``Box`` observation with at least one axis, images or vectors.

    Attributes:
        num_frames: frames per observation, at least 1.
    """

    num_frames: int

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, int) or isinstance(self.num_frames, bool) or self.num_frames < 1:
            raise ValueError(f"FrameStack.num_frames must be a positive int, got {self.num_frames!r}; 4 is usual.")

    @staticmethod
    def _check_below_auto_reset(timestep: TimeStep) -> None:
        if "final_obs" in timestep.info:
            raise ValueError(
                "FrameStack wraps an env that already auto-resets (its info has 'final_obs'), so stacks would mix "
                "episodes; put FrameStack below the training wrappers: for_training(FrameStack(env, n))."
            )

    def reset(self, key: at.Key, params: Any) -> tuple[FrameStackState, TimeStep]:
        env_state, timestep = self.env.reset(key, params)
        self._check_below_auto_reset(timestep)
        frames = jnp.concatenate([timestep.obs] * self.num_frames, axis=-1)
        return FrameStackState(env_state, frames), dataclasses.replace(timestep, obs=frames)

    def step(
        self, key: at.Key, state: FrameStackState, action: at.Array, params: Any
    ) -> tuple[FrameStackState, TimeStep]:
        env_state, timestep = self.env.step(key, state.env_state, action, params)
        self._check_below_auto_reset(timestep)
        channels = timestep.obs.shape[-1]
        frames = jnp.concatenate([state.frames[..., channels:], timestep.obs], axis=-1)
        return FrameStackState(env_state, frames), dataclasses.replace(timestep, obs=frames)

    def observation_space(self, params: Any) -> spaces.Box:
        space = self.env.observation_space(params)
        if not isinstance(space, spaces.Box) or not space.shape:
            raise ValueError(f"FrameStack stacks array observations with a channel axis, got {space!r}.")
        if isinstance(space, spaces.Image):
            return spaces.Image(
                space.height, space.width, space.channels * self.num_frames, space.dtype, low=_float_low(space)
            )
        reps = (1,) * (len(space.shape) - 1) + (self.num_frames,)
        return spaces.Box(
            np.tile(space.low, reps),
            np.tile(space.high, reps),
            (*space.shape[:-1], space.shape[-1] * self.num_frames),
            space.dtype,
        )
