# FindHWLOC.cmake — hwloc (Debian: libhwloc-dev).
#
# pkg-config first (hwloc.pc), then a plain find_path/find_library search.
# Defines:
#   HWLOC_FOUND, HWLOC_VERSION (when pkg-config knows it),
#   HWLOC_INCLUDE_DIRS, HWLOC_LIBRARIES,
#   HWLOC::hwloc — imported target,
#   HWLOC_SONAME — the name the library loads at run time (libhwloc.so.15):
#     the allocator does not link hwloc but opens it with dlopen, once,
#     from its background thread (lib/hwtopo.c).

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_HWLOC QUIET hwloc)
endif()

find_path(HWLOC_INCLUDE_DIR hwloc.h
  HINTS ${PC_HWLOC_INCLUDEDIR} ${PC_HWLOC_INCLUDE_DIRS})
find_library(HWLOC_LIBRARY NAMES hwloc
  HINTS ${PC_HWLOC_LIBDIR} ${PC_HWLOC_LIBRARY_DIRS})

if(PC_HWLOC_VERSION)
  set(HWLOC_VERSION ${PC_HWLOC_VERSION})
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(HWLOC
  REQUIRED_VARS HWLOC_LIBRARY HWLOC_INCLUDE_DIR
  VERSION_VAR HWLOC_VERSION)

if(HWLOC_FOUND)
  set(HWLOC_INCLUDE_DIRS ${HWLOC_INCLUDE_DIR})
  set(HWLOC_LIBRARIES ${HWLOC_LIBRARY})
  if(NOT TARGET HWLOC::hwloc)
    add_library(HWLOC::hwloc UNKNOWN IMPORTED)
    set_target_properties(HWLOC::hwloc PROPERTIES
      IMPORTED_LOCATION "${HWLOC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${HWLOC_INCLUDE_DIR}")
  endif()
endif()
# The SONAME: the library file's (objdump), else its real name cut after
# the major version (libhwloc.so.15.6.1 -> libhwloc.so.15).
if(HWLOC_FOUND AND NOT HWLOC_SONAME)
  find_program(SPB_OBJDUMP objdump)
  if(SPB_OBJDUMP)
    execute_process(COMMAND ${SPB_OBJDUMP} -p ${HWLOC_LIBRARY}
      OUTPUT_VARIABLE _hw_dyn ERROR_QUIET)
    string(REGEX MATCH "SONAME +([^\n ]+)" _hw_m "${_hw_dyn}")
    set(_hw_soname "${CMAKE_MATCH_1}")
  endif()
  if(NOT _hw_soname)
    get_filename_component(_hw_real ${HWLOC_LIBRARY} REALPATH)
    get_filename_component(_hw_real ${_hw_real} NAME)
    string(REGEX MATCH "^libhwloc\\.so\\.[0-9]+" _hw_soname "${_hw_real}")
  endif()
  if(NOT _hw_soname)
    set(_hw_soname libhwloc.so.15)
  endif()
  set(HWLOC_SONAME ${_hw_soname} CACHE STRING "hwloc's run-time library name (dlopen)")
endif()
mark_as_advanced(HWLOC_INCLUDE_DIR HWLOC_LIBRARY HWLOC_SONAME)
