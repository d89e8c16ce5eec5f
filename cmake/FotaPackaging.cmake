# SPDX-License-Identifier: Apache-2.0
# Debian packages with `cpack -G DEB`, one per install component (cmake/FotaInstall.cmake):
#   fota-device, fota-orchestrator, fota-broker-plugin, libfota-client-dev.
# CPack packs the build tree that was just built and tested (no second compile, unlike
# dpkg-buildpackage, which would build everything again in its own tree); what debhelper would
# add is spelled out here: Depends from dpkg-shlibdeps, conffiles, maintainer scripts
# (cmake/install/debian/), stripped binaries, the copyright file. The install prefix must be /usr
# (scripts/lib.sh configures it so); scripts/build-debs.sh builds the packages, the ctest
# `deb_packages` (tests/packaging/) installs them into a throwaway root and checks them.
include_guard(GLOBAL)

set(CPACK_PACKAGE_NAME fota)
set(CPACK_PACKAGE_VENDOR "fota")
set(CPACK_PACKAGE_CONTACT "fota maintainers <maintainers@users.noreply.r-seed-30eaf700.example>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "fleet over-the-air updates over MQTT")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/install/strip-static-libraries.cmake)
# A build that leaves a part out (a client-only or cross build) packs the rest.
set(CPACK_COMPONENTS_ALL dev)
foreach(component_target device:fota-device orchestrator:fota-orchestrator broker:fota_broker_plugin)
  string(REPLACE ":" ";" component_target ${component_target})
  list(GET component_target 1 target)
  if(TARGET ${target})
    list(GET component_target 0 component)
    list(APPEND CPACK_COMPONENTS_ALL ${component})
  endif()
endforeach()

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)

set(fota_debian ${CMAKE_CURRENT_LIST_DIR}/install/debian)

set(CPACK_DEBIAN_DEVICE_PACKAGE_NAME fota-device)
set(CPACK_DEBIAN_DEVICE_PACKAGE_SECTION admin)
# systemd: the unit, and systemd-sysusers / systemd-tmpfiles in postinst.
set(CPACK_DEBIAN_DEVICE_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_DEVICE_PACKAGE_RECOMMENDS "libubootenv-tool | grub-common")
set(CPACK_COMPONENT_DEVICE_DESCRIPTION
    "fota over-the-air update agent\n fota-device downloads signed updates over MQTT 5 with mutual TLS into the\n inactive A/B slot, switches GRUB or U-Boot to it, reboots, confirms a healthy\n boot or lets the boot loader roll back. Ships a hardened systemd unit and\n /etc/fota/device.yaml; not enabled until configured.")
set(CPACK_DEBIAN_DEVICE_PACKAGE_CONTROL_EXTRA
    ${fota_debian}/fota-device/postinst ${fota_debian}/fota-device/prerm ${fota_debian}/fota-device/postrm
    ${fota_debian}/fota-device/conffiles)

set(CPACK_DEBIAN_ORCHESTRATOR_PACKAGE_NAME fota-orchestrator)
set(CPACK_DEBIAN_ORCHESTRATOR_PACKAGE_SECTION net)
set(CPACK_DEBIAN_ORCHESTRATOR_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_ORCHESTRATOR_PACKAGE_RECOMMENDS "fota-broker-plugin")
set(CPACK_COMPONENT_ORCHESTRATOR_DESCRIPTION
    "fota orchestrator and fotactl\n fota-orchestrator runs staged, scheduled fleet rollouts over MQTT with a\n SQLite store, an HTTP API and a hash-chained audit log, as its own system\n user under a hardened systemd unit. fotactl makes the fleet PKI, signs\n artifacts and drives rollouts.")
set(CPACK_DEBIAN_ORCHESTRATOR_PACKAGE_CONTROL_EXTRA
    ${fota_debian}/fota-orchestrator/postinst ${fota_debian}/fota-orchestrator/prerm
    ${fota_debian}/fota-orchestrator/postrm ${fota_debian}/fota-orchestrator/conffiles)

set(CPACK_DEBIAN_BROKER_PACKAGE_NAME fota-broker-plugin)
set(CPACK_DEBIAN_BROKER_PACKAGE_SECTION net)
# The plugin API v5 and the broker symbols it resolves at load time are Mosquitto 2's.
set(CPACK_DEBIAN_BROKER_PACKAGE_DEPENDS "mosquitto (>= 2.0)")
set(CPACK_COMPONENT_BROKER_DESCRIPTION
    "fota plugin for the Mosquitto 2 MQTT broker\n Certificate-bound identity, per-device ACLs, payload validation, rate limits,\n revocation and chunk serving from the artifact store. The snippet in\n /etc/mosquitto/conf.d/fota.conf is inert until uncommented.")
set(CPACK_DEBIAN_BROKER_PACKAGE_CONTROL_EXTRA ${fota_debian}/fota-broker-plugin/conffiles)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libfota-client-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# Static libraries: what fotaConfig.cmake and the .pc files find and link (no shlibdeps).
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libssl-dev (>= 3), libprotobuf-dev, libpaho-mqttpp-dev, libmosquitto-dev (>= 2.0), libspdlog-dev, libubootenv-dev, pkg-config")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "fota device client library (static) and headers\n The update engine, crypto, journal, installers and boot environments\n (fota::client), its U-Boot, Paho and libmosquitto adapters, C++17 headers,\n a CMake package (find_package(fota)) and pkg-config files.")

include(CPack)
