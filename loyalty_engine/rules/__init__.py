"""Warning rules: YAML files (loader) -> SQL (compiler) -> warnings per account (evaluate)."""
