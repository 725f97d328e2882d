"""Faramesh: an execution governor for AI agents."""

__version__ = "0.1.0"
