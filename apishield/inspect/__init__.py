"""Injection inspection (pipeline stage 11): detectors, their scores and the engine.

Pure code without I/O: :class:`Inspector` takes the parts of a request as plain values and
returns :class:`Finding` objects. The ASGI adapter is ``apishield.pipeline.inspection``.
"""

from __future__ import annotations

from apishield.inspect.decode import canonical
from apishield.inspect.engine import CODES, THRESHOLDS, Finding, Inspector, RequestParts
from apishield.inspect.settings import DETECTORS, InspectionExclusion, InspectionSettings

__all__ = [
    "CODES",
    "DETECTORS",
    "THRESHOLDS",
    "Finding",
    "InspectionExclusion",
    "InspectionSettings",
    "Inspector",
    "RequestParts",
    "canonical",
]
