"""``PixelPendulum``: Pendulum-v1 observed only as an RGB image rendered in JAX.

Dynamics, rewards, the torque bounds ``[-2, 2]`` and the 200-step truncation are
gymnax's Pendulum-v1 (through vibe's ``GymnaxEnv``; it never terminates). The
picture follows gym's render without the torque arrow: a white square view
``[-2.2, 2.2]`` metres wide, a red rod of length ``params.l`` hinged at the
centre, a black axle. ``theta = 0`` is upright and positive turns
counter-clockwise, as in gym. One image shows the angle but not the angular
velocity: stack frames (``image_wrappers.FrameStack``) for a policy.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from vibe.core import typing as at
from vibe.envs import draw, pixel_env

ENV_ID = "PixelPendulum-v1"
VIEW_HALF_WIDTH = 2.2  # metres from the centre to each edge (gym's "bound")
ROD_HALF_WIDTH = 0.1  # gym: 0.2 m wide; drawn at least 2 px wide
AXLE_RADIUS = 0.05
BACKGROUND = (255.0, 255.0, 255.0)
ROD_COLOR = (204.0, 77.0, 77.0)
AXLE_COLOR = (0.0, 0.0, 0.0)


def render(
    theta: at.Float[at.Array, ""], height: int, width: int, rod_length: at.ArrayLike = 1.0
) -> at.UInt[at.Array, "{height} {width} 3"]:
    """The RGB uint8 ``[height, width, 3]`` picture of the pendulum at ``theta`` (rad, 0 upright)."""
    pixels_per_metre = min(height, width) / (2.0 * VIEW_HALF_WIDTH)
    px, py = draw.pixel_grid(height, width, pixels_per_metre)
    pixel = 1.0 / pixels_per_metre
    length = jnp.asarray(rod_length, jnp.float32)
    tip_x, tip_y = -length * jnp.sin(theta), length * jnp.cos(theta)
    rod = draw.segment_distance(px, py, 0.0, 0.0, tip_x, tip_y, max(ROD_HALF_WIDTH, pixel))
    axle = draw.circle_distance(px, py, 0.0, 0.0, max(AXLE_RADIUS, pixel))
    layers = [(draw.coverage(rod, pixels_per_metre), ROD_COLOR), (draw.coverage(axle, pixels_per_metre), AXLE_COLOR)]
    return draw.composite(BACKGROUND, layers)


@dataclasses.dataclass(frozen=True)
class PixelPendulum(pixel_env.PixelEnv):
    """Pendulum-v1 with ``Image(height, width, 3)`` uint8 observations (``pixel_env.PixelEnv``).

    State and params are gymnax's Pendulum ``EnvState`` (theta, theta_dot, last_u, time)
    and ``EnvParams`` (``max_steps_in_episode=200``).
    """

    ENV_ID: ClassVar[str] = ENV_ID
    GYMNAX_ID: ClassVar[str] = "Pendulum-v1"

    def render(self, state: Any, params: Any) -> at.UInt[at.Array, "h w 3"]:
        """The observation of ``state``: ``[height, width, 3]`` uint8."""
        return render(state.theta, self.height, self.width, params.l)


def make(height: int = 64, width: int = 64) -> tuple[PixelPendulum, Any]:
    """``(PixelPendulum(height, width), its default params)``."""
    env = PixelPendulum(height, width)
    return env, env.default_params
