# FindURCU.cmake — liburcu, userspace RCU (Debian: liburcu-dev).
#
# pkg-config first (liburcu*.pc), then a plain find_path/find_library search.
# Every flavour links liburcu-common as well. Defines:
#   URCU_FOUND, URCU_VERSION (when pkg-config knows it),
#   URCU_INCLUDE_DIRS, URCU_LIBRARIES (the default flavour + common),
#   URCU::urcu      — the default flavour (urcu/urcu.h; memb in 0.13),
#   URCU::urcu-memb — the membarrier flavour (urcu/urcu-memb.h),
#   URCU::urcu-qsbr — the quiescent-state flavour (urcu/urcu-qsbr.h),
#   URCU::urcu-common — what the flavours share (linked by each of them).
# urcu-memb and urcu-qsbr are optional components: find_package(URCU
# COMPONENTS qsbr) makes qsbr required.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_URCU QUIET liburcu)
endif()

find_path(URCU_INCLUDE_DIR urcu.h
  HINTS ${PC_URCU_INCLUDEDIR} ${PC_URCU_INCLUDE_DIRS})
find_library(URCU_LIBRARY NAMES urcu
  HINTS ${PC_URCU_LIBDIR} ${PC_URCU_LIBRARY_DIRS})
find_library(URCU_COMMON_LIBRARY NAMES urcu-common
  HINTS ${PC_URCU_LIBDIR} ${PC_URCU_LIBRARY_DIRS})
find_library(URCU_MEMB_LIBRARY NAMES urcu-memb
  HINTS ${PC_URCU_LIBDIR} ${PC_URCU_LIBRARY_DIRS})
find_library(URCU_QSBR_LIBRARY NAMES urcu-qsbr
  HINTS ${PC_URCU_LIBDIR} ${PC_URCU_LIBRARY_DIRS})
if(PC_URCU_VERSION)
  set(URCU_VERSION ${PC_URCU_VERSION})
endif()

# Components: memb and qsbr, found when their library is.
foreach(_c memb qsbr)
  string(TOUPPER ${_c} _C)
  if(URCU_${_C}_LIBRARY AND URCU_COMMON_LIBRARY)
    set(URCU_${_c}_FOUND TRUE)
  else()
    set(URCU_${_c}_FOUND FALSE)
  endif()
endforeach()
unset(_c)
unset(_C)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(URCU
  REQUIRED_VARS URCU_LIBRARY URCU_COMMON_LIBRARY URCU_INCLUDE_DIR
  VERSION_VAR URCU_VERSION
  HANDLE_COMPONENTS)

# One imported target per flavour; each brings urcu-common along.
function(_urcu_add_target name lib)
  if(lib AND NOT TARGET URCU::${name})
    add_library(URCU::${name} UNKNOWN IMPORTED)
    set_target_properties(URCU::${name} PROPERTIES
      IMPORTED_LOCATION "${lib}"
      INTERFACE_INCLUDE_DIRECTORIES "${URCU_INCLUDE_DIR}")
    if(NOT name STREQUAL "urcu-common")
      set_property(TARGET URCU::${name} APPEND PROPERTY
        INTERFACE_LINK_LIBRARIES URCU::urcu-common)
    endif()
  endif()
endfunction()

if(URCU_FOUND)
  set(URCU_INCLUDE_DIRS ${URCU_INCLUDE_DIR})
  set(URCU_LIBRARIES ${URCU_LIBRARY} ${URCU_COMMON_LIBRARY})
  _urcu_add_target(urcu-common "${URCU_COMMON_LIBRARY}")
  _urcu_add_target(urcu "${URCU_LIBRARY}")
  _urcu_add_target(urcu-memb "${URCU_MEMB_LIBRARY}")
  _urcu_add_target(urcu-qsbr "${URCU_QSBR_LIBRARY}")
endif()
mark_as_advanced(URCU_INCLUDE_DIR URCU_LIBRARY URCU_COMMON_LIBRARY
  URCU_MEMB_LIBRARY URCU_QSBR_LIBRARY)
