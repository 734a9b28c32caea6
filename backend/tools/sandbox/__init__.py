"""The sandbox that runs model-written Python: Linux namespaces, a fresh unprivileged uid, seccomp and limits.

`isolation.py` finds a way to isolate that works on this machine (bubblewrap, else util-linux
`unshare`) and proves it with a probe; `ceiling.py` bounds a run as a whole (a cgroup v2, else
per-process rlimits sized to fit); `seccomp.py` builds the system-call filter; `runner.py` runs one
program and reports what happened; `launcher.py` is the first code inside the sandbox: it installs
the filter and applies the limits, then runs the program.
"""
