"""Serving: a websocket policy server and client speaking openpi-client's wire protocol."""
