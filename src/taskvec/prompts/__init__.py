"""Prompt configs, few-shot selection and rendering."""
