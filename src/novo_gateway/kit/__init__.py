"""Shared infrastructure: settings, database, clock, errors, limiter, logging; imports no domain."""
