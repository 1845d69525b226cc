"""Outage rehearsals: network faults, webhook storms, crash-restart, and their runner."""
