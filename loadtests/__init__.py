"""Locust workloads for licensing services, and the release gate around them.

Workloads (one per file) import the service's public contract
(``licensing_service.contract``) and ``fixtures/``, never its internals.
"""
