"""The sandbox that runs model-written Python: Linux namespaces, an unprivileged uid and resource limits.

`isolation.py` finds a way to isolate that works on this machine (bubblewrap, else util-linux
`unshare`) and proves it with a probe; `runner.py` runs one program and reports what happened;
`launcher.py` is the first code inside the sandbox: it applies the limits, then runs the program.
"""
