"""The runner: the host loop over one jitted, donated train chunk."""
