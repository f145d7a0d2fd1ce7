#!/usr/bin/env python
"""Django project used by Celeriac's beat tests (tests/it/beat.rs): django-celery-beat on the
test database given in DJBEAT_DATABASE_URL."""
import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbeat.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
