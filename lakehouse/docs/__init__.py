"""Documents: the Python standard library's documentation as a bronze -> silver -> gold corpus."""
