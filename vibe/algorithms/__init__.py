"""Learning algorithms: each a config, a state pytree, init, train_step and act."""
