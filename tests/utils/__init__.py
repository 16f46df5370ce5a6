"""Helpers the tests share: processes, the CLI runner, platforms, fakes. Never test modules."""
