"""OpenAPI: loading specs (``load_openapi``), validating requests against them, and
``apishield init``'s starting policy."""

from __future__ import annotations

from apishield.schema.loader import SpecError, load_openapi
from apishield.schema.spec import MediaSchema, OpenAPISpec, Operation, Parameter

__all__ = ["MediaSchema", "OpenAPISpec", "Operation", "Parameter", "SpecError", "load_openapi"]
