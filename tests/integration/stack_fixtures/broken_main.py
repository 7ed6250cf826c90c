"""A functions source that fails at import, for the stack's start-failure test."""

raise RuntimeError("broken on purpose: this module cannot be imported")
