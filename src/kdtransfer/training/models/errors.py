"""The one error a model raises when it cannot be built or used as configured (kdtransfer.training.models)."""


class ModelError(ValueError):
    """A model cannot be built or used as configured; the message names the fix."""
