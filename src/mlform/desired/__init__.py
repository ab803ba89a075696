"""The desired system: addressed objects, their dependency graph and fingerprints."""
