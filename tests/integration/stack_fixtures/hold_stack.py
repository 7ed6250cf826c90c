"""Starts a small stack, prints its process ids as JSON, then waits forever.

The watchdog test kills this process with SIGKILL and checks that the
stack's children go away anyway.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from local.stack import Stack

stack = Stack(components=["firestore", "issuer"], log_dir=Path(sys.argv[1]), quiet=True)
stack.start()
print(json.dumps(stack.process_ids()), flush=True)
while True:
    time.sleep(1)
