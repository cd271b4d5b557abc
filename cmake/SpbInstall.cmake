# SpbInstall.cmake — the installed package: CMake config (find_package
# (spbmalloc) -> spbmalloc::spbmalloc, spbmalloc::spbmalloc_static) and the
# pkg-config file spbmalloc.pc. The library targets and their install(TARGETS
# ... EXPORT spbmallocTargets) rules are in lib/CMakeLists.txt.
include(CMakePackageConfigHelpers)

set(SPB_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/spbmalloc)

install(EXPORT spbmallocTargets
  NAMESPACE spbmalloc::
  FILE spbmallocTargets.cmake
  DESTINATION ${SPB_CMAKE_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/spbmallocConfig.cmake.in
  ${PROJECT_BINARY_DIR}/spbmallocConfig.cmake
  INSTALL_DESTINATION ${SPB_CMAKE_DIR})
# 0.x: a minor release may break the API, so only the same minor matches.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/spbmallocConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/spbmallocConfig.cmake
  ${PROJECT_BINARY_DIR}/spbmallocConfigVersion.cmake
  DESTINATION ${SPB_CMAKE_DIR})

# pkg-config. The prefix is substituted at install time (cmake --install
# --prefix X must give a .pc that points at X), so the file is written by
# an install(CODE) step rather than at configure time.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(_spb_pc_libdir "${CMAKE_INSTALL_LIBDIR}")
else()
  set(_spb_pc_libdir "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(_spb_pc_includedir "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(_spb_pc_includedir "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
install(CODE "
  set(SPB_PC_LIBDIR [[${_spb_pc_libdir}]])
  set(SPB_PC_INCLUDEDIR [[${_spb_pc_includedir}]])
  set(PROJECT_VERSION ${PROJECT_VERSION})
  configure_file([[${PROJECT_SOURCE_DIR}/cmake/spbmalloc.pc.in]]
    [[${PROJECT_BINARY_DIR}/spbmalloc.pc]] @ONLY)
  file(INSTALL [[${PROJECT_BINARY_DIR}/spbmalloc.pc]]
    DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")
")
unset(_spb_pc_libdir)
unset(_spb_pc_includedir)
