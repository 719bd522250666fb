"""Serves an app of bench/python/apps.py directly with uvicorn on 127.0.0.1:$PORT: one
process, uvicorn's default loop and HTTP implementation (the baselines of the Python rows).

    PORT=8000 python bench/python/uvicorn_serve.py hello
"""

import os
import sys

import uvicorn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

uvicorn.run(f"apps:{sys.argv[1]}", host="127.0.0.1", port=int(os.environ["PORT"]),
            log_level="warning")
