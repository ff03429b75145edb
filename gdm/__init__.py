"""The ``gdm`` command line: one entry point over every service."""
