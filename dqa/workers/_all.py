"""Import every worker module so that each registers itself."""
