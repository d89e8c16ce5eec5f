# SPDX-License-Identifier: Apache-2.0
# fota: the device client library (static, with its CMake package and pkg-config files, in
# ${PN}-staticdev / ${PN}-dev) and the fota-device agent with its systemd unit (${PN}).
# A sketch, untested (contrib/README.md): it follows the install rules of cmake/FotaInstall.cmake.
SUMMARY = "fota over-the-air update client and agent (MQTT 5, A/B slots, GRUB/U-Boot)"
HOMEPAGE = "https://example.invalid/fota"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=${FOTA_LICENSE_MD5}"
# md5sum LICENSE of the revision you build.
FOTA_LICENSE_MD5 ?= "3b83ef96387f14655fc854ddc3c6bd57"

# Point these at your fota repository and revision.
FOTA_GIT_URI ?= "git://example.invalid/fota.git;protocol=https;branch=main"
SRC_URI = "${FOTA_GIT_URI} \
           file://fw_env.config \
           file://device.yaml \
          "
SRCREV ?= "${AUTOREV}"
PV = "0.1.0+git${SRCPV}"
S = "${WORKDIR}/git"

inherit cmake pkgconfig systemd

# The build needs the protobuf compiler on the build host and the libraries for the target.
# fota-device links both MQTT adapters (Paho MQTT C++ and libmosquitto) and libubootenv.
DEPENDS = "protobuf protobuf-native openssl paho-mqtt-cpp mosquitto spdlog fmt cli11 yaml-cpp \
           libubootenv systemd"
# The top-level CMakeLists.txt also finds the orchestrator's and the tests' dependencies; until
# the build has an option that configures only the client and the agent, add them here:
DEPENDS += "sqlite3 nlohmann-json cpp-httplib date googletest benchmark"

EXTRA_OECMAKE = "-DBUILD_TESTING=OFF -DFOTA_BUILD_BENCH=OFF -DFOTA_WERROR=OFF"

SYSTEMD_SERVICE:${PN} = "fota-device.service"
# Enabled: an image carries its /etc/fota (configuration, certificates, keys) from your layers.
SYSTEMD_AUTO_ENABLE:${PN} ?= "enable"

# The boot-loader hook: U-Boot's environment location (fw_env.config) for libubootenv, and the
# agent's configuration. Replace both in a bbappend of your machine layer.
do_install:append() {
    install -d ${D}${sysconfdir}
    install -m 0644 ${WORKDIR}/fw_env.config ${D}${sysconfdir}/fw_env.config
    install -m 0644 ${WORKDIR}/device.yaml ${D}${sysconfdir}/fota/device.yaml
    # The orchestrator and broker parts are not for devices.
    rm -f ${D}${bindir}/fota-orchestrator ${D}${bindir}/fotactl
    rm -rf ${D}${libdir}/fota ${D}${sysconfdir}/mosquitto ${D}${sysconfdir}/fota/orchestrator.yaml
    rm -f ${D}${systemd_system_unitdir}/fota-orchestrator.service
    rm -f ${D}${nonarch_libdir}/sysusers.d/fota-orchestrator.conf ${D}${nonarch_libdir}/tmpfiles.d/fota-orchestrator.conf
    rm -rf ${D}${docdir}/fota-orchestrator ${D}${docdir}/fota-broker-plugin
}

# systemd-sysusers creates fota-module (update modules) on first boot from the shipped
# sysusers.d file; /var/lib/fota comes from the tmpfiles.d file and StateDirectory=.
FILES:${PN} += "${nonarch_libdir}/sysusers.d ${nonarch_libdir}/tmpfiles.d ${datadir}/fota \
                ${systemd_system_unitdir}/fota-device.service"
FILES:${PN}-dev += "${libdir}/cmake/fota"
CONFFILES:${PN} = "${sysconfdir}/fota/device.yaml ${sysconfdir}/fw_env.config"
RDEPENDS:${PN} = "libubootenv-bin"
