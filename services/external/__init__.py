"""Clients of the outside world: the video source, the processor, Instagram and Suno.

Each is small, built from ``Settings`` (and optionally a ``requests.Session``), does no I/O until
called, and raises only ``resilience.ExternalError`` subclasses. Tests and the local stack point
them at ``devtools.fakes.world``.
"""
