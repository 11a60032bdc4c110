"""numpy at work, for native frames: the main thread sorts a fresh array of doubles in
``sort_numbers`` (@sort) and transforms one in ``transform`` (@fft), over and over, down numpy's
own C and C++ functions: on a CPU with AVX-512 the sort runs functions that realign their stack
and keep their frame address in their frame; the FFT runs C++ whose unwind rules record the size
of pushed call arguments (DW_CFA_GNU_args_size).  Needs numpy.

Usage: ``python numpy_native.py [DURATION=30]``; the ready line (see _truth.py) carries the main
thread.
"""

import time

import numpy as np

from _truth import duration_arg, ready, thread_record


def sort_numbers(rng):
    return np.sort(rng.random(200_000))  # @sort


def transform(rng):
    return np.fft.fft(rng.random(1 << 16))  # @fft


def main():
    duration = duration_arg()
    rng = np.random.default_rng(1)
    ready(main=thread_record())
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        sort_numbers(rng)
        transform(rng)


if __name__ == "__main__":
    main()
