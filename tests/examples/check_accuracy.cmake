# Runs PROGRAM with --metrics METRICS (plus ARGS, a ;-list) and fails unless the reported
# test_accuracy is at least MIN_ACCURACY.
execute_process(COMMAND ${PROGRAM} ${ARGS} --metrics ${METRICS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
file(READ ${METRICS} json)
string(JSON acc GET "${json}" test_accuracy)
if(acc LESS MIN_ACCURACY)
  message(FATAL_ERROR "test accuracy ${acc} is below ${MIN_ACCURACY}")
endif()
message(STATUS "test accuracy ${acc} (at least ${MIN_ACCURACY})")
