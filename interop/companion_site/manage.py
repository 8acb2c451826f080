#!/usr/bin/env python
"""The Django half of the companion interop tests (crates/tidysession/tests/django_companion.rs).

A tiny Django project sharing its database and SECRET_KEY with the Rust example
`django_companion`. Everything comes from the environment (see settings.py); the test runs
`migrate`, creates users with `create_user`, and serves it with `runserver`.
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
