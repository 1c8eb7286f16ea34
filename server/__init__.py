"""Crossroads: a live, streamed decision-making journey."""
