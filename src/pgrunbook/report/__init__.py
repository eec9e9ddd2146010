"""Renderers of the report model (findings) for people: terminal tables and sizes."""
