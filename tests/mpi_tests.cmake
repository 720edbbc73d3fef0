# The MPI pool's tests: plain programs started by mpirun (every rank runs
# main; rank 0 checks), with 3 ranks (two workers) and 2 (one worker).
# --oversubscribe: more ranks than cores here. Open MPI refuses to run as
# root unless told; the variables are ignored by other MPIs and non-root.
set(EXE_MPIRUN_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
set(EXE_MPI_LSAN "")
if(EXE_SANITIZE MATCHES "address")
  set(EXE_MPI_LSAN "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/mpi_lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0")
  list(APPEND EXE_MPIRUN_ENV "${EXE_MPI_LSAN}")
endif()

add_executable(test_mpi test_mpi.c)
target_link_libraries(test_mpi PRIVATE executor_mpi)
target_compile_options(test_mpi PRIVATE ${EXE_WARNINGS})

foreach(n 3 2)
  add_test(NAME test_mpi_n${n} COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
    $<TARGET_FILE:test_mpi>)
  set_tests_properties(test_mpi_n${n} PROPERTIES LABELS mpi TIMEOUT 300 ENVIRONMENT "${EXE_MPIRUN_ENV}")
endforeach()

# A worker rank killed while serving: the job ends (Open MPI aborts it, an MPI
# with fault tolerance fails the futures), within a bound, never hangs.
add_test(NAME test_mpi_rank_death COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/mpi_rank_death.sh
  ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:test_mpi>)
set_tests_properties(test_mpi_rank_death PROPERTIES LABELS mpi TIMEOUT 120 ENVIRONMENT "${EXE_MPIRUN_ENV}")

# The example: the same workload and answer on a process pool and on ranks.
if(TARGET mpi_primes)
  add_test(NAME example_mpi_primes_process COMMAND mpi_primes --pool process --blocks 50)
  add_test(NAME example_mpi_primes_mpi COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe
    $<TARGET_FILE:mpi_primes> --pool mpi --blocks 50)
  set_tests_properties(example_mpi_primes_process example_mpi_primes_mpi PROPERTIES
    LABELS "mpi;example" TIMEOUT 120 ENVIRONMENT "${EXE_MPIRUN_ENV}")
endif()

# Spawn mode: started alone, it spawns its worker ranks (77: this MPI cannot).
add_executable(test_mpi_spawn test_mpi_spawn.c)
target_link_libraries(test_mpi_spawn PRIVATE executor_mpi)
target_compile_options(test_mpi_spawn PRIVATE ${EXE_WARNINGS})
add_test(NAME test_mpi_spawn COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 --oversubscribe
  $<TARGET_FILE:test_mpi_spawn>)
set_tests_properties(test_mpi_spawn PROPERTIES LABELS mpi TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "${EXE_MPIRUN_ENV}")
# Started without mpirun and without oversubscription, Open MPI has no slot
# for the copies: the refusal must be -EOPNOTSUPP, not an abort.
find_program(EXE_OMPI_INFO ompi_info)
if(EXE_OMPI_INFO)
  add_test(NAME test_mpi_spawn_refused COMMAND test_mpi_spawn --expect-refusal)
  set_tests_properties(test_mpi_spawn_refused PROPERTIES LABELS mpi TIMEOUT 60
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=0;${EXE_MPI_LSAN}")
endif()

# Open MPI with --enable-recovery keeps the job running when a rank dies and
# reports nothing: the heartbeats must find the dead rank, fail its task
# with -ECHILD, and the pool must go on with the other rank.
if(EXE_OMPI_INFO)
  add_test(NAME test_mpi_rank_death_recovery COMMAND ${MPIEXEC_EXECUTABLE} --enable-recovery
    ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe $<TARGET_FILE:test_mpi> --kill-rank)
  set_tests_properties(test_mpi_rank_death_recovery PROPERTIES LABELS mpi TIMEOUT 60
    ENVIRONMENT "${EXE_MPIRUN_ENV}")
endif()

# Under ThreadSanitizer, the MPI test joins the stress tests (the TSan step
# of scripts/test.sh runs those); Open MPI's internals are suppressed.
if(EXE_SANITIZE MATCHES "thread")
  add_test(NAME stress_mpi COMMAND ${MPIEXEC_EXECUTABLE} -x TSAN_OPTIONS ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe
    $<TARGET_FILE:test_mpi>)
  set_tests_properties(stress_mpi PROPERTIES LABELS stress TIMEOUT 600 ENVIRONMENT
    "${EXE_MPIRUN_ENV};TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1 suppressions=${CMAKE_CURRENT_SOURCE_DIR}/mpi_tsan.supp")
endif()
