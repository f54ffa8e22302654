# The layers of libsmp (docs/architecture.md): each of engine/, nn/, data/, optim/ and
# parallel/ is one OBJECT library, smp_<layer>, whose own src/ is a PRIVATE include directory
# and whose include/ is a PUBLIC one. A layer links only the layers below it, so a source that
# includes a header of a layer above it, or another layer's src/, does not compile. The root
# CMakeLists.txt links the five into the one shared libsmp (smp::smp).

# Build settings every layer shares and no user of the library sees: linked PRIVATE.
add_library(smp_layer_options INTERFACE)
target_compile_features(smp_layer_options INTERFACE cxx_std_20)
if(SMP_NATIVE)
  target_compile_options(smp_layer_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()

# smp_add_layer(<layer>): smp_<layer> from every .cpp below src/ (with EXCLUDE_REGEX, those whose
# path does not match it), for the layer in the calling directory.
function(smp_add_layer layer)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "EXCLUDE_REGEX" "")
  file(GLOB_RECURSE _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp)
  if(arg_EXCLUDE_REGEX)
    list(FILTER _srcs EXCLUDE REGEX "${arg_EXCLUDE_REGEX}")
  endif()
  set(_t smp_${layer})
  add_library(${_t} OBJECT ${_srcs})
  set_target_properties(${_t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${_t}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${_t} PRIVATE smp_layer_options)
  smp_set_warnings(${_t})
  install(DIRECTORY include/smp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          PATTERN detail EXCLUDE)
endfunction()
