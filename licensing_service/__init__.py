"""licensing-harness reference licensing service (POSPal v2 wire contract).

The public, importable contract lives in :mod:`licensing_service.contract`;
everything else is the service's own business.
"""

__version__ = "0.1.0"
