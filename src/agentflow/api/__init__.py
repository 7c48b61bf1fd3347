"""The HTTP API of a master: REST under ``/api/v1``, worker sessions, health and metrics.

Owns request parsing and validation, problem+json errors, auth and the worker session
protocol; it changes state only by proposing commands through the master's command log, and
holds no business rules of its own. Entry point: :func:`create_app` over a
:class:`MasterService`.
"""

from agentflow.api.app import create_app
from agentflow.api.service import MasterService

__all__ = ["MasterService", "create_app"]
