"""The command-line tools: ``scgan-colorize`` (here or on a server) and ``scgan-convert``.

This package sits above ``model/``: ``--help`` and ``--server`` runs import neither torch nor the networks;
the local run loads them when it opens the checkpoint.
"""
