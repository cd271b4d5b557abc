# run-install-test.cmake — driven by ctest (tests/install/CMakeLists.txt).
# Installs the build tree into SPB_WORK_DIR/prefix, then builds and runs the
# consumer three ways. Any failing step fails the test with its output.
cmake_minimum_required(VERSION 3.18)

foreach(v SPB_BUILD_DIR SPB_WORK_DIR SPB_CONSUMER_DIR SPB_C_COMPILER SPB_GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run-install-test.cmake: ${v} is not set")
  endif()
endforeach()

set(prefix ${SPB_WORK_DIR}/prefix)
file(REMOVE_RECURSE ${SPB_WORK_DIR})
file(MAKE_DIRECTORY ${SPB_WORK_DIR})

# step(<name> <command...>): run, print the output on failure, stop.
function(step name)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${rc})\n"
      "command: ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "install test: ${name}: ok\n${out}")
endfunction()

# 1. Install, and check the files the package promises.
step("cmake --install" ${CMAKE_COMMAND} --install ${SPB_BUILD_DIR} --prefix ${prefix})
file(GLOB libdirs LIST_DIRECTORIES true ${prefix}/lib ${prefix}/lib64 ${prefix}/lib/*-linux-gnu)
set(libdir "")
foreach(d ${libdirs})
  if(EXISTS ${d}/libspbmalloc.a)
    set(libdir ${d})
  endif()
endforeach()
if(NOT libdir)
  message(FATAL_ERROR "install test: libspbmalloc.a not installed under ${prefix}")
endif()
foreach(f ${libdir}/libspbmalloc.so ${libdir}/libspbmalloc.so.0 ${libdir}/libspbmalloc.a
    ${prefix}/include/spbmalloc.h ${prefix}/include/spbmalloc_counters.def
    ${libdir}/cmake/spbmalloc/spbmallocConfig.cmake
    ${libdir}/cmake/spbmalloc/spbmallocConfigVersion.cmake
    ${libdir}/cmake/spbmalloc/spbmallocTargets.cmake
    ${libdir}/pkgconfig/spbmalloc.pc)
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "install test: ${f} was not installed")
  endif()
endforeach()

# 2. find_package(spbmalloc): shared and static.
step("consumer configure (find_package)" ${CMAKE_COMMAND}
  -S ${SPB_CONSUMER_DIR} -B ${SPB_WORK_DIR}/consumer -G ${SPB_GENERATOR}
  -DCMAKE_C_COMPILER=${SPB_C_COMPILER} -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_BUILD_TYPE=Release)
step("consumer build (find_package)" ${CMAKE_COMMAND} --build ${SPB_WORK_DIR}/consumer)
step("consumer run (find_package, shared)"
  ${SPB_WORK_DIR}/consumer/consumer_shared ${libdir}/libspbmalloc.so)
step("consumer run (find_package, static)"
  ${SPB_WORK_DIR}/consumer/consumer_static static)

# 3. pkg-config: shared, found through PKG_CONFIG_PATH alone.
find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG_EXECUTABLE)
  message(FATAL_ERROR "install test: pkg-config not found (apt-get install pkg-config)")
endif()
set(ENV{PKG_CONFIG_PATH} ${libdir}/pkgconfig)
execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --cflags --libs spbmalloc
  RESULT_VARIABLE rc OUTPUT_VARIABLE pc_flags ERROR_VARIABLE err
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install test: pkg-config spbmalloc failed: ${err}")
endif()
execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --variable=libdir spbmalloc
  OUTPUT_VARIABLE pc_libdir OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT pc_libdir STREQUAL libdir)
  message(FATAL_ERROR "install test: spbmalloc.pc libdir is '${pc_libdir}', want '${libdir}'")
endif()
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
step("consumer build (pkg-config)" ${SPB_C_COMPILER} -std=gnu11 -O2
  ${SPB_CONSUMER_DIR}/consumer.c ${pc_flags} -Wl,-rpath,${pc_libdir}
  -o ${SPB_WORK_DIR}/consumer_pc)
step("consumer run (pkg-config, shared)"
  ${SPB_WORK_DIR}/consumer_pc ${libdir}/libspbmalloc.so)
