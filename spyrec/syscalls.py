"""Names of the x86-64 Linux system calls a thread is found waiting in, by number.

From the kernel's arch/x86/entry/syscalls/syscall_64.tbl: the calls that block (I/O, polling,
sleeping, locks, waiting for children and signals) and the common ones around them.  A number
not listed is shown as ``syscall N``.
"""

NAMES = {
    0: "read", 1: "write", 2: "open", 3: "close", 7: "poll", 8: "lseek", 9: "mmap",
    11: "munmap", 16: "ioctl", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev",
    23: "select", 24: "sched_yield", 34: "pause", 35: "nanosleep", 40: "sendfile",
    42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg",
    56: "clone", 57: "fork", 59: "execve", 61: "wait4", 62: "kill", 65: "semop", 69: "msgsnd",
    70: "msgrcv", 72: "fcntl", 73: "flock", 74: "fsync", 75: "fdatasync", 128: "rt_sigtimedwait",
    130: "rt_sigsuspend", 202: "futex", 217: "getdents64", 230: "clock_nanosleep",
    232: "epoll_wait", 247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll",
    275: "splice", 281: "epoll_pwait", 288: "accept4", 295: "preadv", 296: "pwritev",
    299: "recvmmsg", 307: "sendmmsg", 318: "getrandom", 426: "io_uring_enter",
    435: "clone3", 441: "epoll_pwait2",
}


def syscall_name(number: int) -> str:
    return NAMES.get(number, "syscall %d" % number)
