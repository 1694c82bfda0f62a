"""A target service for the end-to-end tests: `workload.py MODE [SECONDS]` (see profiles.demo)."""

import sys
import threading

from profiles import demo

stop = threading.Event()
demo.run(sys.argv[1], stop)
stop.wait(float(sys.argv[2]) if len(sys.argv) > 2 else 120)
stop.set()
