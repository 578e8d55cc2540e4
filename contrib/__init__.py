"""Plugins shipped with corral, off until enabled in the config file."""
