"""Warnings -> the night's mailing -> one digest per recipient, ops notices -> delivery through the ledger."""
