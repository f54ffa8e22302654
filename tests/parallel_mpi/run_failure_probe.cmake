# Runs failure_probe on 3 ranks and checks that ranks 0 and 2 heard of rank 1's failure
# promptly. Called by CTest with -DMPIEXEC=... -DNUMPROC_FLAG=... -DPROBE=...
execute_process(
  COMMAND ${MPIEXEC} ${NUMPROC_FLAG} 3 --oversubscribe --allow-run-as-root ${PROBE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 50)
message("${out}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited with status 0 although rank 1 failed\n${err}")
endif()
foreach(r 0 2)
  if(NOT out MATCHES "probe: rank ${r} got RemoteFailure from rank 1 after ([0-9.]+) s: rank 1 failed: boom")
    message(FATAL_ERROR "rank ${r} did not report rank 1's failure (exit status ${rc})\n${err}")
  endif()
  # Rank 1 reports 0.5 s after the allreduce starts; the notice must arrive within seconds.
  if(CMAKE_MATCH_1 GREATER 5)
    message(FATAL_ERROR "rank ${r} heard of the failure only after ${CMAKE_MATCH_1} s")
  endif()
endforeach()
