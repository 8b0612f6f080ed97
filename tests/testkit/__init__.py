"""Helpers shared by the tests (real implementations, never mocks of our own code)."""
