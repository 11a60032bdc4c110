/* The least any sampler at a given rate must do: wake RATE times a second, on an absolute
   1/RATE grid with 1 ns timer slack, and nothing else, until PID is gone.

       null_waker PID RATE [READY_FILE]

   READY_FILE, if given, is created once the loop runs.  Built by bench_interference.py
   (mode null-c) and bench_record.py (--fine-variant null-c) with cc. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: null_waker PID RATE [READY_FILE]\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    long interval = (long)(1e9 / atof(argv[2]));
    struct timespec next;
    long rounds = 0;
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &next);
    if (argc > 3) {
        FILE *ready = fopen(argv[3], "w");
        if (ready)
            fclose(ready);
    }
    for (;;) {
        next.tv_nsec += interval;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (++rounds % 100 == 0 && kill(pid, 0) != 0)
            return 0;
    }
}
