# FindNUMA.cmake — libnuma (Debian: libnuma-dev).
#
# pkg-config first (numa.pc), then a plain find_path/find_library search.
# Defines:
#   NUMA_FOUND, NUMA_VERSION (when pkg-config knows it),
#   NUMA_INCLUDE_DIRS, NUMA_LIBRARIES,
#   NUMA::numa — imported target.
# The allocator uses only its numaif system call wrappers (lib/os.c).

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_NUMA QUIET numa)
endif()

find_path(NUMA_INCLUDE_DIR numa.h
  HINTS ${PC_NUMA_INCLUDEDIR} ${PC_NUMA_INCLUDE_DIRS})
find_library(NUMA_LIBRARY NAMES numa
  HINTS ${PC_NUMA_LIBDIR} ${PC_NUMA_LIBRARY_DIRS})
if(PC_NUMA_VERSION)
  set(NUMA_VERSION ${PC_NUMA_VERSION})
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NUMA
  REQUIRED_VARS NUMA_LIBRARY NUMA_INCLUDE_DIR
  VERSION_VAR NUMA_VERSION)

if(NUMA_FOUND)
  set(NUMA_INCLUDE_DIRS ${NUMA_INCLUDE_DIR})
  set(NUMA_LIBRARIES ${NUMA_LIBRARY})
  if(NOT TARGET NUMA::numa)
    add_library(NUMA::numa UNKNOWN IMPORTED)
    set_target_properties(NUMA::numa PROPERTIES
      IMPORTED_LOCATION "${NUMA_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NUMA_INCLUDE_DIR}")
  endif()
endif()
mark_as_advanced(NUMA_INCLUDE_DIR NUMA_LIBRARY)
