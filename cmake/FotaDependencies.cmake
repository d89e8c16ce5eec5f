# SPDX-License-Identifier: Apache-2.0
# Every dependency is a Debian 12 package; scripts/install-deps.sh installs them.
# Nothing is downloaded at build time.
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(PahoMqttCpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(GTest REQUIRED)
pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
# U-Boot's environment (fota_client_uboot) and systemd readiness (fota-device).
pkg_check_modules(UBOOTENV REQUIRED IMPORTED_TARGET libubootenv)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

# The tests' broker (also in a cross build: the host's mosquitto).
find_program(FOTA_MOSQUITTO_BIN mosquitto PATHS /usr/sbin /usr/local/sbin REQUIRED)

# The orchestrator, fotactl, the broker plugin, the simulator and the benchmarks.
if(FOTA_BUILD_SERVER)
  find_package(nlohmann_json REQUIRED)
  find_package(date REQUIRED)
  find_package(SQLite3 REQUIRED)
  # The PostgreSQL store (orchestrator/src/postgres_store.cpp): libpq from libpq-dev.
  pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
  find_path(FOTA_MOSQUITTO_PLUGIN_INCLUDE mosquitto_plugin.h REQUIRED)
endif()
if(FOTA_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  # zstd --patch-from in the delta benchmark (bench/delta).
  pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
endif()
