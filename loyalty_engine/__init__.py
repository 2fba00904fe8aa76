"""loyalty-engine: nightly early warning for B2B accounts that are drifting away.

One module per stage of the night; flows/nightly.py composes them.
"""
