"""Telemetry service: Prio3/Poplar1 aggregators over HTTP, clients and the collector."""
