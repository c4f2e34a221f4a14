"""Pipelines are declared, not coded into the engine: a list of stages plus a handler per step.

``registry.get_pipeline(name)`` is the only lookup; adding a third pipeline is a new module that
builds a ``PipelineSpec`` and registers it.
"""
