"""``PixelEnv``: a gymnax env whose observation is replaced by an RGB picture of its state.

The pixel envs (``pixel_cartpole.py``, ``pixel_pendulum.py``) keep gymnax's dynamics, rewards,
termination and truncation (through vibe's ``GymnaxEnv`` adapter: no auto-reset, terminated vs
truncated kept apart) and differ only in what they draw.
"""

import dataclasses
from typing import Any, ClassVar

from vibe.core import typing as at
from vibe.core.types import TimeStep
from vibe.envs import gymnax_env, spaces

MIN_SIZE = 16  # below this the drawings are smudges


@dataclasses.dataclass(frozen=True)
class PixelEnv:
    """``Image(height, width, 3)`` uint8 observations of a gymnax env; does NOT auto-reset.

    Subclasses name the env (``ENV_ID``, ``GYMNAX_ID``) and define ``render``. Two instances of the
    same size compare equal, so one can be a static ``jit`` argument.

    Attributes:
        height: image height in pixels (>= 16).
        width: image width in pixels (>= 16).
    """

    ENV_ID: ClassVar[str]
    GYMNAX_ID: ClassVar[str]

    height: int = 64
    width: int = 64
    _inner: gymnax_env.GymnaxEnv = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for field in ("height", "width"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < MIN_SIZE:
                raise ValueError(f"{type(self).__name__}.{field} must be an int >= {MIN_SIZE}, got {value!r}.")
        object.__setattr__(self, "_inner", gymnax_env.GymnaxEnv(self.GYMNAX_ID))

    @property
    def name(self) -> str:
        return self.ENV_ID

    @property
    def default_params(self) -> Any:
        return self._inner.default_params

    def render(self, state: Any, params: Any) -> at.UInt[at.Array, "h w 3"]:
        """The observation of ``state``: ``[height, width, 3]`` uint8."""
        raise NotImplementedError

    def reset(self, key: at.Key, params: Any) -> tuple[Any, TimeStep]:
        state, timestep = self._inner.reset(key, params)
        return state, dataclasses.replace(timestep, obs=self.render(state, params))

    def step(self, key: at.Key, state: Any, action: at.Array, params: Any) -> tuple[Any, TimeStep]:
        next_state, timestep = self._inner.step(key, state, action, params)
        return next_state, dataclasses.replace(timestep, obs=self.render(next_state, params))

    def observation_space(self, params: Any) -> spaces.Image:
        return spaces.Image(self.height, self.width, 3)

    def action_space(self, params: Any) -> spaces.Discrete | spaces.Box:
        return self._inner.action_space(params)
