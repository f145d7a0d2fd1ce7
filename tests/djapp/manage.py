#!/usr/bin/env python
"""The Django project of the process-pool tests (tests/it/runner.rs)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
