"""Regenerates every golden file: /usr/bin/python3 tests/reference/gen_all.py"""
import glob
import os
import runpy

here = os.path.dirname(os.path.abspath(__file__))
for script in sorted(glob.glob(os.path.join(here, "gen_*.py"))):
    if os.path.basename(script) != "gen_all.py":
        runpy.run_path(script, run_name="__main__")
