"""TrainConfig and the CLI: the only place where component configs are composed."""
