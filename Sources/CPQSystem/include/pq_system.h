// Linux calls the worker processes need that Swift's Glibc module does not export
// (they are declared only under _GNU_SOURCE).
#ifndef PQ_SYSTEM_H
#define PQ_SYSTEM_H

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): the host's wake-up descriptor.
int pq_eventfd(void);
/// memfd_create(name, MFD_CLOEXEC): memory shared with a worker.
int pq_memfd(const char *name);
/// prctl(PR_SET_PDEATHSIG, signal): die when the parent thread dies.
int pq_set_parent_death_signal(int signal);
/// pipe2(fds, O_CLOEXEC).
int pq_pipe_cloexec(int fds[2]);

// The ELF file layout (Elf64_Ehdr, Elf64_Phdr and their constants), read by the plugin loader's
// check of a .so before dlopen: Swift's Glibc module does not include <elf.h>.
#include <elf.h>

#endif
