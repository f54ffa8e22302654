# smp-trace-merge tests. Included from tests/parallel/CMakeLists.txt, this file adds the CTest
# tests; run with `cmake -DTOOL=... -DWORK=... -DMODE=files|dir|bad -P trace.cmake`, it is the test:
# it writes two synthetic rank files whose clocks started 2.5 ms apart, merges them with the tool
# and checks that the ranks are aligned on the earlier clock.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  if(TARGET smp-trace-merge)
    foreach(_mode files dir bad)
      add_test(NAME smp_trace_merge_${_mode}
               COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:smp-trace-merge>
                       -DWORK=${CMAKE_CURRENT_BINARY_DIR}/trace_merge_${_mode} -DMODE=${_mode}
                       -P ${CMAKE_CURRENT_LIST_FILE})
      set_tests_properties(smp_trace_merge_${_mode} PROPERTIES TIMEOUT 60 LABELS parallel)
    endforeach()
  endif()
  return()
endif()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
# rank, epoch_unix_us, ts of its one forward span
function(write_rank rank epoch ts)
  file(WRITE ${WORK}/trace_rank${rank}.json "{\"traceEvents\":[\
{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":${rank},\"tid\":0,\"args\":{\"name\":\"rank ${rank}\"}},\
{\"name\":\"forward\",\"cat\":\"forward\",\"ph\":\"X\",\"ts\":${ts},\"dur\":5,\"pid\":${rank},\"tid\":1,\"args\":{}}],\
\"otherData\":{\"rank\":${rank},\"world_size\":2,\"epoch_unix_us\":${epoch}}}")
endfunction()
write_rank(0 1700000000000 20)
write_rank(1 1700000002500 10)

set(_out ${WORK}/merged.json)
if(MODE STREQUAL "files")
  set(_args ${_out} ${WORK}/trace_rank1.json ${WORK}/trace_rank0.json)
elseif(MODE STREQUAL "dir")
  set(_args ${_out} ${WORK})
else()
  file(WRITE ${WORK}/no_epoch.json "{\"traceEvents\":[],\"otherData\":{\"rank\":3}}")
  set(_args ${_out} ${WORK}/trace_rank0.json ${WORK}/no_epoch.json)
endif()
execute_process(COMMAND ${TOOL} ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _o ERROR_VARIABLE _e)
message("exit status ${_rc}\n${_o}${_e}")

if(MODE STREQUAL "bad")
  if(_rc EQUAL 0 OR NOT _e MATCHES "smp-trace-merge: .*no_epoch.json.* otherData.rank and otherData.epoch_unix_us")
    message(FATAL_ERROR "expected a non-zero exit status and a message naming no_epoch.json")
  endif()
  if(EXISTS ${_out})
    message(FATAL_ERROR "a failed merge wrote ${_out}")
  endif()
  return()
endif()

if(NOT _rc EQUAL 0 OR NOT _o MATCHES "merged 2 rank file")
  message(FATAL_ERROR "expected exit status 0 and 'merged 2 rank file(s)'")
endif()
file(READ ${_out} _json)
string(JSON _epoch GET "${_json}" otherData epoch_unix_us)
if(NOT _epoch STREQUAL "1700000000000")
  message(FATAL_ERROR "merged epoch is ${_epoch}; expected the earliest, 1700000000000")
endif()
string(JSON _n LENGTH "${_json}" traceEvents)
set(_found "")
math(EXPR _last "${_n} - 1")
foreach(_i RANGE ${_last})
  string(JSON _ph GET "${_json}" traceEvents ${_i} ph)
  if(_ph STREQUAL "X")
    string(JSON _pid GET "${_json}" traceEvents ${_i} pid)
    string(JSON _ts GET "${_json}" traceEvents ${_i} ts)
    # Rank 1's clock started 2500 us later: its ts 10 is 2510 on rank 0's axis.
    string(REGEX REPLACE "\\.0+$" "" _ts "${_ts}")
    list(APPEND _found "${_pid}:${_ts}")
  endif()
endforeach()
list(SORT _found)
if(NOT _found STREQUAL "0:20;1:2510")
  message(FATAL_ERROR "merged spans (pid:ts) are '${_found}'; expected '0:20;1:2510'")
endif()
