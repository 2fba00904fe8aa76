"""Warnings -> the night's mailing -> one digest per recipient, ops notices -> delivery through the ledger; envelope.py gives every mail its headers."""
