"""The HTTP surfaces, one Quart-Trio app: the REST control API, the OpenAI-compatible
speech API, Prometheus metrics, the OpenAPI document and the browser page."""

from ._errors import error_response, openai_error_response, status_for
from ._hypercorn import TrackedConfig
from ._hypercorn import apply as apply_hypercorn_fixes
from ._openai import OPENAI_SAMPLE_RATE, OPENAI_VOICES, openai_voice_map
from ._openapi import openapi_document
from ._rest import create_app

__all__ = [
    "OPENAI_SAMPLE_RATE",
    "OPENAI_VOICES",
    "TrackedConfig",
    "apply_hypercorn_fixes",
    "create_app",
    "error_response",
    "openai_error_response",
    "openai_voice_map",
    "openapi_document",
    "status_for",
]
