"""Outage rehearsal tests."""
