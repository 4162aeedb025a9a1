"""gridhub: an open-source data hub for smart grids.

The public surface is small on purpose: build a hub from settings, and the exception tree.
"""

from gridhub.config import Settings
from gridhub.errors import GridhubError

__all__ = ["GridhubError", "Settings", "__version__"]
__version__ = "0.1.0"
