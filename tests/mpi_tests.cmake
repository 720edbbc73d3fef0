# The MPI pool's tests: plain programs started by mpirun (every rank runs
# main; rank 0 checks), with 3 ranks (two workers) and 2 (one worker).
# --oversubscribe: more ranks than cores here. Open MPI refuses to run as
# root unless told; the variables are ignored by other MPIs and non-root.
set(EXE_MPIRUN_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
if(EXE_SANITIZE MATCHES "address")
  list(APPEND EXE_MPIRUN_ENV "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/mpi_lsan.supp:print_suppressions=0")
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
