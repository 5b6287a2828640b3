class ModelError(ValueError):
    """A model cannot be built or used as configured; the message names the fix."""
