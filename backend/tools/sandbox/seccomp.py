"""The seccomp filter of every sandboxed run: classic BPF built here, installed by `launcher.py` before the program.

The filter refuses what a run never needs and what would let state or privilege outlive it: new
namespaces (user namespaces above all), the kernel keyrings, memory that no rlimit counts (memfd,
SysV shared memory), tracing, mounting, module and kexec loading, eBPF, perf, userfaultfd, io_uring.
Like Flatpak's, it checks the architecture first (x86_64 and aarch64; anything else, including 32-bit
calls on x86_64, kills the process) and returns EPERM, so programs see an ordinary error.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
ARCH_OFFSET, NR_OFFSET, ARG0_LOW_OFFSET = 4, 0, 16  # struct seccomp_data; both architectures are little-endian
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x00000080
CLONE_NAMESPACES = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)
"""For clone(); its low byte is the exit signal, so CLONE_NEWTIME (0x80) is only checked for unshare()."""

DENIED = (
    "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "ptrace",
    "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at",
    "open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "nfsservctl", "lookup_dcookie", "syslog",
    "vhangup", "fanotify_init", "io_uring_setup", "io_uring_enter", "io_uring_register", "memfd_create",
    "memfd_secret", "shmget", "shmat", "shmctl", "shmdt", "move_pages", "migrate_pages", "iopl", "ioperm", "uselib",
)
"""Refused with EPERM whatever their arguments (x86-only calls are skipped on aarch64)."""

SYSCALLS: dict[int, dict[str, int]] = {
    AUDIT_ARCH_X86_64: {
        "clone": 56, "unshare": 272, "clone3": 435, "setns": 308, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "name_to_handle_at": 303,
        "open_by_handle_at": 304, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "quotactl": 179, "quotactl_fd": 443, "nfsservctl": 180, "lookup_dcookie": 212, "syslog": 103,
        "vhangup": 153, "fanotify_init": 300, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "shmat": 30,
        "shmctl": 31, "shmdt": 67, "move_pages": 279, "migrate_pages": 256, "iopl": 172, "ioperm": 173,
        "uselib": 134,
    },
    AUDIT_ARCH_AARCH64: {
        "clone": 220, "unshare": 97, "clone3": 435, "setns": 268, "keyctl": 219, "add_key": 217,
        "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "mount": 40,
        "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "quotactl": 60, "quotactl_fd": 443, "nfsservctl": 42, "lookup_dcookie": 18, "syslog": 116,
        "vhangup": 58, "fanotify_init": 262, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "shmat": 196,
        "shmctl": 195, "shmdt": 197, "move_pages": 239, "migrate_pages": 238,
    },
}
"""From the kernel's asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64)."""


@dataclass(frozen=True)
class _Insn:
    code: int
    k: int
    true: str | None = None
    """Label a conditional jump goes to when it holds; otherwise it falls through to the next instruction."""


def _ret(value: int) -> _Insn:
    return _Insn(BPF_RET_K, value)


def _arch_block(arch: int, prefix: str) -> list[tuple[str | None, _Insn]]:
    numbers = SYSCALLS[arch]
    eperm, enosys = f"{prefix}-eperm", f"{prefix}-enosys"
    block: list[tuple[str | None, _Insn]] = [(prefix, _Insn(BPF_LD_W_ABS, NR_OFFSET))]
    if arch == AUDIT_ARCH_X86_64:
        block.append((None, _Insn(BPF_JGE_K, X32_SYSCALL_BIT, eperm)))  # the x32 ABI: never needed
    block += [
        (None, _Insn(BPF_JEQ_K, numbers["clone"], f"{prefix}-clone")),
        (None, _Insn(BPF_JEQ_K, numbers["unshare"], f"{prefix}-unshare")),
        # clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall back to clone.
        (None, _Insn(BPF_JEQ_K, numbers["clone3"], enosys)),
    ]
    block += [(None, _Insn(BPF_JEQ_K, numbers[name], eperm)) for name in DENIED if name in numbers]
    block += [
        (None, _ret(SECCOMP_RET_ALLOW)),
        (f"{prefix}-clone", _Insn(BPF_LD_W_ABS, ARG0_LOW_OFFSET)),  # the kernel reads only clone's low 32 flag bits
        (None, _Insn(BPF_JSET_K, CLONE_NAMESPACES, eperm)),
        (None, _ret(SECCOMP_RET_ALLOW)),
        (f"{prefix}-unshare", _Insn(BPF_LD_W_ABS, ARG0_LOW_OFFSET)),  # higher bits make unshare fail with EINVAL
        (None, _Insn(BPF_JSET_K, CLONE_NAMESPACES | CLONE_NEWTIME, eperm)),
        (None, _ret(SECCOMP_RET_ALLOW)),
        (eperm, _ret(SECCOMP_RET_ERRNO | errno.EPERM)),
        (enosys, _ret(SECCOMP_RET_ERRNO | errno.ENOSYS)),
    ]
    return block


def _assemble(program: list[tuple[str | None, _Insn]]) -> bytes:
    """Encode `struct sock_filter`s, turning labels into the forward offsets classic BPF jumps take."""
    where = {label: index for index, (label, _) in enumerate(program) if label is not None}
    encoded = bytearray()
    for index, (_, insn) in enumerate(program):
        jump = 0
        if insn.true is not None:
            jump = where[insn.true] - index - 1
            if not 0 <= jump <= 255:
                raise ValueError(f"jump to {insn.true} out of reach ({jump})")
        encoded += struct.pack("<HBBI", insn.code, jump, 0, insn.k)
    return bytes(encoded)


def filter_program() -> bytes:
    """The whole filter as bytes of `struct sock_filter`, ready for prctl(PR_SET_SECCOMP) or `bwrap --seccomp`."""
    program: list[tuple[str | None, _Insn]] = [
        (None, _Insn(BPF_LD_W_ABS, ARCH_OFFSET)),
        (None, _Insn(BPF_JEQ_K, AUDIT_ARCH_X86_64, "x86_64")),
        (None, _Insn(BPF_JEQ_K, AUDIT_ARCH_AARCH64, "aarch64")),
        (None, _ret(SECCOMP_RET_KILL_PROCESS)),  # i386 calls on x86_64, or an architecture we have no table for
    ]
    program += _arch_block(AUDIT_ARCH_X86_64, "x86_64")
    program += _arch_block(AUDIT_ARCH_AARCH64, "aarch64")
    return _assemble(program)
