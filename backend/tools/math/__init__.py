"""The math_calc tool, its SymPy engine (run in a capped child process) and its expression parser."""
