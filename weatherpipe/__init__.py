"""Shared core of the weather data platform: settings, logging, errors, stage results, local stack, CLI."""

__version__ = "0.1.0"
