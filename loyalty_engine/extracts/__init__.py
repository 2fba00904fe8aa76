"""Extract files -> staged tables -> the data contract's checks -> clean tables and quarantine."""
