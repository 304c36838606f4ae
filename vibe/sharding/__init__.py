"""Sharding: the device mesh and its axis names, the FSDP rule for parameters, multi-host start-up."""
