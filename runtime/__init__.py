"""The schedc runtime: executes program files (installed as schedc.runtime)."""
