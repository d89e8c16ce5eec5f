# SPDX-License-Identifier: Apache-2.0
################################################################################
#
# fota - a sketch, untested (contrib/README.md)
#
################################################################################

FOTA_VERSION = 0.1.0
# Point these at your fota repository (or use FOTA_OVERRIDE_SRCDIR in local.mk).
FOTA_SITE = https://example.invalid/fota.git
FOTA_SITE_METHOD = git
FOTA_LICENSE = Apache-2.0
FOTA_LICENSE_FILES = LICENSE
FOTA_INSTALL_STAGING = YES
FOTA_DEPENDENCIES = host-protobuf protobuf openssl mosquitto spdlog yaml-cpp cli11 \
	libubootenv paho-mqtt-c systemd
# The top-level CMakeLists.txt also finds the orchestrator's and the tests' dependencies; until
# the build has an option that configures only the client and the agent, they are needed too.
FOTA_DEPENDENCIES += sqlite json-for-modern-cpp cpp-httplib date gtest google-benchmark
FOTA_CONF_OPTS = -DBUILD_TESTING=OFF -DFOTA_BUILD_BENCH=OFF -DFOTA_WERROR=OFF

# The device gets the agent, its unit and the boot scripts; the orchestrator side is removed.
define FOTA_REMOVE_SERVER_PARTS
	rm -f $(TARGET_DIR)/usr/bin/fota-orchestrator $(TARGET_DIR)/usr/bin/fotactl
	rm -rf $(TARGET_DIR)/usr/lib/fota $(TARGET_DIR)/etc/mosquitto/conf.d/fota.conf
	rm -f $(TARGET_DIR)/etc/fota/orchestrator.yaml
	rm -f $(TARGET_DIR)/usr/lib/systemd/system/fota-orchestrator.service
	rm -f $(TARGET_DIR)/usr/lib/sysusers.d/fota-orchestrator.conf
	rm -f $(TARGET_DIR)/usr/lib/tmpfiles.d/fota-orchestrator.conf
endef
FOTA_POST_INSTALL_TARGET_HOOKS += FOTA_REMOVE_SERVER_PARTS

# The unit comes with `cmake --install`; enable it. fw_env.config: BR2_ROOTFS_OVERLAY.
define FOTA_INSTALL_INIT_SYSTEMD
	mkdir -p $(TARGET_DIR)/etc/systemd/system/multi-user.target.wants
	ln -sf ../../../../usr/lib/systemd/system/fota-device.service \
		$(TARGET_DIR)/etc/systemd/system/multi-user.target.wants/fota-device.service
endef

# The fota-module user for update modules (the sysusers.d file covers systemd images too).
define FOTA_USERS
	fota-module -1 fota-module -1 * - - - fota update modules
endef

$(eval $(cmake-package))
