"""Capacity planning: pure functions that prove a model fits its GPUs before anything is scheduled."""
