"""Spot capacity: interruption signals, the on-demand/spot split and the drain plan (pure functions)."""
