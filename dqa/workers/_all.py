"""Import every worker module so that each registers itself."""
from . import measures  # noqa: F401
from . import vlm  # noqa: F401
from ..vbench import consistency, quality  # noqa: F401
from ..vbench import flicker, raft  # noqa: F401
from . import proxyclip  # noqa: F401
