"""Local, offline stand-ins for the Google side of Pix Me!.

`local.stack.Stack` starts the emulators, the event bridge, the token issuer
and the functions on loopback ports; `python -m local.stack up` does the same
from a terminal. Nothing here is deployed.
"""
