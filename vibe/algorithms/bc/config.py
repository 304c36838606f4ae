"""``DataConfig`` (which dataset, how it is read) and ``BCConfig`` (plain Python: the config layer imports them).

The dataset's flags have no ``algo.`` prefix: ``--data.dataset PATH --data.action-horizon 4 --data.normalize``.
One ``train_step`` draws ``data.batch_size`` samples, so the runner's logged ``step`` counts samples seen
(not env steps: an offline algorithm steps no env while it learns).
"""

import dataclasses
from typing import Annotated, Literal

import tyro

from vibe.networks.config import EncoderConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A LeRobot dataset that vibe recorded (``record_dataset``) or any v3 dataset with its env named."""

    # Dataset folder (holds meta/info.json), relative to where the command runs (BUILD_WORKING_DIRECTORY).
    dataset: str = ""
    action_horizon: int = 1  # H: predict actions a_t .. a_{t+H-1} from o_t (1: one action)
    normalize: bool = False  # z-score states (and continuous actions) with the dataset's NormStats
    batch_size: int = 256  # samples per update
    # "memory": the whole dataset on the devices once, batches drawn uniformly with replacement inside jit.
    # "stream": a torch DataLoader (seeded epochs, drop_last) reads batches from disk while training runs, for
    # datasets that do not fit (images, video); its position is in every checkpoint, so resume is exact.
    loader: Literal["memory", "stream"] = "memory"
    num_workers: int = 2  # DataLoader worker processes of the streaming loader (0: read in the training process)

    def __post_init__(self) -> None:
        if self.loader not in ("memory", "stream"):
            raise ValueError(f"DataConfig.loader={self.loader!r} must be 'memory' or 'stream'")
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers must be an integer >= 0, got {self.num_workers!r}")
        for name in ("action_horizon", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DataConfig.{name} must be a positive integer, got {value!r}")


# --data.* rather than --algo.data.*: the dataset is the run's input, not a hyper-parameter.
Data = Annotated[DataConfig, tyro.conf.arg(prefix_name=False)]


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning: maximum likelihood of the dataset's action chunks given the observation."""

    data: Data = dataclasses.field(default_factory=DataConfig)
    num_updates: int = 2_000  # gradient steps of the run (one batch each)
    lr: float = 1e-3  # Adam learning rate
    # Continuous actions: "mse" regresses the chunk's mean (deterministic), "gaussian" fits a diagonal Gaussian
    # with a learned state-independent std (negative log-likelihood). Discrete actions: cross-entropy always.
    continuous_loss: Literal["mse", "gaussian"] = "mse"
    max_grad_norm: float = 1.0  # global gradient-norm clip
    encoder: EncoderConfig = dataclasses.field(
        default_factory=lambda: EncoderConfig(hidden_sizes=(256, 256), activation="relu")
    )

    def __post_init__(self) -> None:
        if not isinstance(self.num_updates, int) or isinstance(self.num_updates, bool) or self.num_updates < 1:
            raise ValueError(f"BCConfig.num_updates must be a positive integer, got {self.num_updates!r}")
        for name in ("lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BCConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.continuous_loss not in ("mse", "gaussian"):
            raise ValueError(f"BCConfig.continuous_loss={self.continuous_loss!r} must be 'mse' or 'gaussian'")

    @property
    def steps_per_update(self) -> int:
        """Samples per ``train_step``: the runner's unit, so the logged ``step`` is samples seen."""
        return self.data.batch_size
