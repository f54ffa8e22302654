# Runs COMMAND (a ;-list) and passes when it exits non-zero within the CTest timeout and its
# combined output matches REGEX. With ONCE=<regex>, that regex must occur exactly once (e.g.
# an error printed by one rank, not by all of them).
#   cmake -DCOMMAND="a;b;c" -DREGEX="..." [-DONCE=regex] -P expect_failure.cmake
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
message("${all}")
if(rc EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit status, got 0")
endif()
if(NOT all MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match '${REGEX}'")
endif()
if(ONCE)
  string(REGEX MATCHALL "${ONCE}" hits "${all}")
  list(LENGTH hits n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "'${ONCE}' occurs ${n} times; expected it once")
  endif()
endif()
message("exit status ${rc} and the expected message: ok")
