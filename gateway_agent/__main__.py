"""`python -m gateway_agent serve ...` (the CLI patches gevent before importing redis)."""
import sys

from gateway_agent.cli import main

sys.exit(main())
