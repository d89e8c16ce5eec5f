# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts where (GNUInstallDirs), and the exported client package that
# `find_package(fota CONFIG)` and pkg-config find (docs/CLIENT.md, "Using the installed package").
# Every install rule names one component, and each component is one Debian package
# (cmake/FotaPackaging.cmake):
#   dev           libfota-client-dev  client static libraries, public headers, CMake package, .pc files
#   device        fota-device         the agent, its unit, /etc/fota/device.yaml, the boot scripts
#   orchestrator  fota-orchestrator   fota-orchestrator and fotactl, the unit, /etc/fota/orchestrator.yaml
#   broker        fota-broker-plugin  the Mosquitto plugin and its (inert) /etc/mosquitto/conf.d/ snippet
# The rules live beside the targets (client/, orchestrator/, broker-plugin/, proto/); this file
# holds the directories and the package files they share.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(FOTA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/fota)
set(FOTA_INSTALL_PKGCONFIGDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# The broker plugin is loaded by path (`plugin` in mosquitto.conf), never linked: a directory of its own.
set(FOTA_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/fota)
# systemd's vendor directories, under the prefix (/usr/lib/systemd/system with the prefix /usr).
set(FOTA_INSTALL_UNITDIR ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
set(FOTA_INSTALL_SYSUSERSDIR ${CMAKE_INSTALL_PREFIX}/lib/sysusers.d)
set(FOTA_INSTALL_TMPFILESDIR ${CMAKE_INSTALL_PREFIX}/lib/tmpfiles.d)
set(FOTA_INSTALL_DIR ${CMAKE_CURRENT_LIST_DIR}/install)

# fota_install_package_docs(COMPONENT PACKAGE FILE...): a Debian package's documentation directory
# (share/doc/PACKAGE) with the licence as its `copyright` file, as Debian policy asks.
function(fota_install_package_docs component package)
  install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${package}
          RENAME copyright COMPONENT ${component})
  if(ARGN)
    install(FILES ${ARGN} DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${package} COMPONENT ${component})
  endif()
endfunction()

# fota_install_client_package(): fotaConfig.cmake, its version file and the pkg-config files.
# Called by client/CMakeLists.txt once every exported target exists.
function(fota_install_client_package)
  configure_package_config_file(${FOTA_INSTALL_DIR}/fotaConfig.cmake.in
                                ${CMAKE_CURRENT_BINARY_DIR}/fotaConfig.cmake
                                INSTALL_DESTINATION ${FOTA_INSTALL_CMAKEDIR})
  # 0.x: a minor release may break the API, so only the same major.minor is compatible.
  write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/fotaConfigVersion.cmake
                                   VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/fotaConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/fotaConfigVersion.cmake
          DESTINATION ${FOTA_INSTALL_CMAKEDIR} COMPONENT dev)
  # The .pc files find their prefix from their own location, so a package relocated by
  # `cmake --install --prefix` or DESTDIR works.
  file(RELATIVE_PATH pc_to_prefix /${FOTA_INSTALL_PKGCONFIGDIR} /)
  string(REGEX REPLACE "/$" "" FOTA_PC_PREFIX "\${pcfiledir}/${pc_to_prefix}")
  foreach(pc fota-client fota-client-mosquitto)
    configure_file(${FOTA_INSTALL_DIR}/${pc}.pc.in ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc @ONLY)
    install(FILES ${CMAKE_CURRENT_BINARY_DIR}/${pc}.pc DESTINATION ${FOTA_INSTALL_PKGCONFIGDIR} COMPONENT dev)
  endforeach()
endfunction()
