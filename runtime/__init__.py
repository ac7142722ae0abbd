"""The schedc runtime: executes program files (installed as schedc.runtime)."""

if __name__ != "schedc.runtime":  # the folder is on sys.path when python starts in the repository
    raise ImportError("this folder installs as schedc.runtime: import schedc.runtime, not runtime")
