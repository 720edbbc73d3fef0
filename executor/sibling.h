/*
 * sibling.h - the few internal calls the sibling library libexecutor-mpi
 * uses, exported from the shared library under their internal exe__ names.
 *
 * Why exported and not public: a pool kind that lives in another library
 * needs to make futures with its own hooks and complete them, and to break
 * its pool with a message, which only the core can do (futures and pools are
 * opaque to users). Building the MPI pool into the core instead would make
 * every user link MPI; linking a second copy of the core's objects into
 * libexecutor-mpi would give a program two error hooks, two thread-local
 * "current task" slots and two pool registries. So the core exports these
 * symbols and nothing else internal. They are no API: no header under
 * include/ declares them, they change without notice, and libexecutor-mpi
 * is always built from the same tree as the core it links.
 */
#ifndef EXE_SIBLING_H
#define EXE_SIBLING_H

#if defined(EXE_BUILDING_LIBRARY) && !defined(EXE_STATIC_DEFINE)
#define EXE__SIBLING __attribute__((visibility("default")))
#else
#define EXE__SIBLING
#endif

#endif
