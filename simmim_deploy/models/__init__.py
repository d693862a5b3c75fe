"""Encoders, the SimMIM wrapper and task heads. Importing this registers the tiny test models."""

from simmim_deploy.models import registry as _registry  # noqa: F401  (registers tiny models)
