"""Providers: the narrow protocol through which apply changes the world, one per kind."""
