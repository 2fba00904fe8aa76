"""A second process holding a database's run lock, as a run in progress does:

    python -m tests.support.lock_holder <database>    # prints "locked", then holds it until killed
"""

import sys
import time
from pathlib import Path

from loyalty_engine.store import night_lock

if __name__ == "__main__":
    with night_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
