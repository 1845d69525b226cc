"""Outage rehearsals and hostile-input runs against the licensing service."""
