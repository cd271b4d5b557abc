# FindHWLOC.cmake — hwloc (Debian: libhwloc-dev).
#
# pkg-config first (hwloc.pc), then a plain find_path/find_library search.
# Defines:
#   HWLOC_FOUND, HWLOC_VERSION (when pkg-config knows it),
#   HWLOC_INCLUDE_DIRS, HWLOC_LIBRARIES,
#   HWLOC::hwloc — imported target.
# The allocator runs it once, from its background thread (lib/hwtopo.c).

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
mark_as_advanced(HWLOC_INCLUDE_DIR HWLOC_LIBRARY)
