"""Helper module of stacks.py with a non-BMP (kind 4) character in its file name.

``émoji_sleep`` sleeps at the ``# @uni-sleep`` line.
"""

import time


def émoji_sleep(duration):
    time.sleep(duration)  # @uni-sleep
