# smp-trace-merge: merges the per-rank trace files (docs/tracing.md). Included from
# parallel/CMakeLists.txt; installed beside the library, so it finds libsmp through a relative RPATH.
add_executable(smp-trace-merge ${CMAKE_CURRENT_LIST_DIR}/smp_trace_merge.cpp)
target_link_libraries(smp-trace-merge PRIVATE smp::smp)
smp_set_warnings(smp-trace-merge)
set_target_properties(smp-trace-merge PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin
  INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
install(TARGETS smp-trace-merge RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
