"""Outage rehearsals: network faults, webhook storms, crash-restart and the runner that plays them."""
