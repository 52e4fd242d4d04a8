"""``python3 -m iris_ai_worker``: run the worker (see main.py)."""
import sys

from .main import main

sys.exit(main())
