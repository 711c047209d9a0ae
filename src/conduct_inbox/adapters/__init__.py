"""Adapters to outside services (one per protocol); they never import the domain layers."""
