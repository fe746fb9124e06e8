#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "pq_system.h"

int pq_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
int pq_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
int pq_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }
int pq_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
