"""Deployment models shipped with relbridge (package data; see bridge.release.models)."""
