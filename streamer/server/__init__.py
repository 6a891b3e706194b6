"""The server process. Its rooms:

- ``session/``: the session core (a listener's session, queue and pre-emption, the
  player of one request, config resolution, the session manager, the outbox);
- ``runtime/``: what the whole process shares (inference scheduler, admission, CPU
  priority, metrics);
- ``security/``: API keys, browser tokens, the origin rule, per-key quotas, TLS;
- ``websocket/``: the real-time transport, one nursery per connection;
- ``http/``: REST control, the OpenAI speech API, Prometheus, OpenAPI and the page;
- ``app.py``: the composition root that wires them into one Trio nursery.
"""

from .app import RunningServer, run_server
from .runtime import Services, build_services

__all__ = ["RunningServer", "Services", "build_services", "run_server"]
