"""Circuit breakers. Today only `Breakers` (compat.py), the class the gateway and supervisor use."""
from daemon.safety.breakers.compat import Breakers

__all__ = ["Breakers"]
