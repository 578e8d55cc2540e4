"""Plugins bundled with corral and on by default."""
