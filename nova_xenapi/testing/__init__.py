"""Test harnesses: a real in-process Nova driving nova-xenapi against xapisim."""
