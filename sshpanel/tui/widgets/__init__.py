"""Provides the widgets of the dashboard."""
