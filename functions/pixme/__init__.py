"""Pix Me!'s backend: the core modules here, use cases in services/, Google in adapters/.

Empty on purpose: importing the package must not import anything else, so a
cold start pays only for the modules the invoked function uses.
"""
