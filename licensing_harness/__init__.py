"""The project's composition: one ``licensing-harness`` command over every part.

The parts (the reference service, the fake Stripe, the load harness and, later,
the rehearsals) import one another one way only; this package is the one place
that may import them all (``tests/contract/test_boundaries.py`` holds the rules).
"""
