# cmake -DSMP_BUILD_DIR=... -DCONSUMER_SRC=... -DWORK_DIR=... -DGENERATOR=... -DCXX=... -P install_test.cmake
# Installs the built libsmp into a fresh prefix, builds consumer/ against it with
# find_package(smp), runs it and checks what it prints.
foreach(var SMP_BUILD_DIR CONSUMER_SRC WORK_DIR GENERATOR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run("cmake --install" "${CMAKE_COMMAND}" --install "${SMP_BUILD_DIR}" --prefix "${prefix}")
# Configure with an empty environment of hints: only the install prefix may supply smp.
run("configuring the consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_SRC}" -B "${WORK_DIR}/build"
    -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run("building the consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
run("running the consumer" "${WORK_DIR}/build/app")
message(STATUS "consumer printed: ${run_output}")
if(NOT run_output MATCHES "^libsmp [0-9]+\\.[0-9]+\\.[0-9]+ sum=10\n$")
  message(FATAL_ERROR "unexpected consumer output: '${run_output}'")
endif()
