"""Import every worker module so that each registers itself."""
from . import measures  # noqa: F401
