"""One adapter per system; each module is also that system's driver when run as a script.

Driver modules import only the standard library and their own system's packages, so the
peers' drivers can run in the peers' own environment (``bench/.peers/``).
"""
