"""``PixelCartPole``: CartPole-v1 observed only as an RGB image rendered in JAX.

The dynamics, rewards, termination (|x| > 2.4, |theta| > 12 degrees) and the
500-step truncation are gymnax's CartPole-v1, reached through vibe's
``GymnaxEnv`` adapter (no auto-reset, terminated vs truncated kept apart); this
module only replaces the observation by a picture of the state.

The picture follows gym's ``CartPole-v1`` render: a white background, a black
cart and a brown pole hinged a quarter of the cart's height above its centre,
the track ``[-x_threshold, x_threshold]`` spanning the image width. Shapes are
drawn with signed-distance functions over the pixel grid (draw.py) and one pixel of
antialiasing, so a sub-pixel move of the cart or pole still changes the image
(a policy can see velocities across stacked frames), and rendering is a few
fused elementwise ops per pixel with no gathers or loops.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from vibe.core import typing as at
from vibe.envs import draw, pixel_env

ENV_ID = "PixelCartPole-v1"
# Geometry in metres, gym's (its 600 px wide screen shows 4.8 m: 125 px/m).
# Small images draw the cart at least 4 x 3 px and the pole at least 2 px wide, so they stay visible.
CART_HALF_WIDTH = 0.2  # gym: 50 px wide
CART_HALF_HEIGHT = 0.12  # gym: 30 px high
POLE_HALF_WIDTH = 0.04  # gym: 10 px wide
# The pole's hinge sits half the cart's half height above its centre (gym's axle offset).
# The scene from the cart's bottom to the upright pole's tip is centred vertically;
# this is the height (m) of that centre above the cart's centre line.
SCENE_CENTER = 0.47
# The smallest view height in metres: a short, wide image still shows the whole pole.
MIN_VIEW_HEIGHT = 2.4
# RGB colours (gym's): background, cart, pole.
BACKGROUND = (255.0, 255.0, 255.0)
CART_COLOR = (0.0, 0.0, 0.0)
POLE_COLOR = (202.0, 152.0, 101.0)


def render(
    x: at.Float[at.Array, ""],
    theta: at.Float[at.Array, ""],
    height: int,
    width: int,
    x_threshold: at.ArrayLike = 2.4,
    pole_length: at.ArrayLike = 1.0,
) -> at.UInt[at.Array, "{height} {width} 3"]:
    """The RGB uint8 ``[height, width, 3]`` picture of a cart at ``x`` (m) with the pole at ``theta`` (rad).

    ``theta = 0`` is upright, positive leans right (gym's convention). The view is
    ``2 * x_threshold`` metres wide (at least ``MIN_VIEW_HEIGHT`` tall); ``pole_length``
    is the full length (gymnax's ``2 * params.length``). Pure JAX: jits and vmaps.
    """
    pixels_per_metre = jnp.minimum(width / (2.0 * jnp.asarray(x_threshold, jnp.float32)), height / MIN_VIEW_HEIGHT)
    # Pixel centres in metres: x to the right from the track centre, y up from the cart's centre line.
    px, py = draw.pixel_grid(height, width, pixels_per_metre, SCENE_CENTER)
    pixel = 1.0 / pixels_per_metre
    cart_half_width = jnp.maximum(CART_HALF_WIDTH, 2.0 * pixel)
    cart_half_height = jnp.maximum(CART_HALF_HEIGHT, 1.5 * pixel)
    cart = draw.box_distance(px, py, x, 0.0, cart_half_width, cart_half_height)
    pivot = cart_half_height / 2
    tip_x = x + pole_length * jnp.sin(theta)
    tip_y = pivot + pole_length * jnp.cos(theta)
    pole = draw.segment_distance(px, py, x, pivot, tip_x, tip_y, jnp.maximum(POLE_HALF_WIDTH, pixel))
    layers = [(draw.coverage(cart, pixels_per_metre), CART_COLOR), (draw.coverage(pole, pixels_per_metre), POLE_COLOR)]
    return draw.composite(BACKGROUND, layers)


@dataclasses.dataclass(frozen=True)
class PixelCartPole(pixel_env.PixelEnv):
    """CartPole-v1 with ``Image(height, width, 3)`` uint8 observations (``pixel_env.PixelEnv``).

    The state and params are gymnax's CartPole ``EnvState`` (x, x_dot, theta,
    theta_dot, time) and ``EnvParams`` (``max_steps_in_episode=500``).
    """

    ENV_ID: ClassVar[str] = ENV_ID
    GYMNAX_ID: ClassVar[str] = "CartPole-v1"

    def render(self, state: Any, params: Any) -> at.UInt[at.Array, "h w 3"]:
        """The observation of ``state``: ``[height, width, 3]`` uint8."""
        return render(state.x, state.theta, self.height, self.width, params.x_threshold, 2.0 * params.length)


def make(height: int = 64, width: int = 64) -> tuple[PixelCartPole, Any]:
    """``(PixelCartPole(height, width), its default params)``."""
    env = PixelCartPole(height, width)
    return env, env.default_params
