"""Provides the screens and modals of the dashboard."""
