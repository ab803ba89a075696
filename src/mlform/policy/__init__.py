"""Policies as code: built-in packs, custom CEL rules, levels and exemptions."""
