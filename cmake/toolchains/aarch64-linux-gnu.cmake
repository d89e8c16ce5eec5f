# SPDX-License-Identifier: Apache-2.0
# Cross-compiling fota's device side for arm64 with Debian's cross toolchain
# (crossbuild-essential-arm64) against the sysroot scripts/cross-sysroot.sh unpacks
# (docs/CLIENT.md, "Cross-compiling"). scripts/cross-build.sh uses it:
#
#   cmake -S . -B build-arm64 -G Ninja --toolchain cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DFOTA_BUILD_SERVER=OFF
#
# FOTA_CROSS_SYSROOT (cache variable or environment) overrides the sysroot's place. Programs
# (protoc, grub-editenv, mosquitto for the tests) are the host's; headers, libraries and CMake
# packages come from the sysroot only. Tests run under qemu-user with the sysroot as the
# target's file system root (CMAKE_CROSSCOMPILING_EMULATOR), so ctest runs them as usual.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT FOTA_CROSS_SYSROOT)
  if(DEFINED ENV{FOTA_CROSS_SYSROOT})
    set(FOTA_CROSS_SYSROOT $ENV{FOTA_CROSS_SYSROOT})
  else()
    set(FOTA_CROSS_SYSROOT /var/cache/fota-cross/arm64/sysroot)
  endif()
endif()
set(FOTA_CROSS_SYSROOT ${FOTA_CROSS_SYSROOT} CACHE PATH "arm64 sysroot (scripts/cross-sysroot.sh)")
# try_compile projects re-read this file: pass the sysroot on to them.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FOTA_CROSS_SYSROOT)
if(NOT EXISTS ${FOTA_CROSS_SYSROOT}/.fota-sysroot)
  message(FATAL_ERROR "no arm64 sysroot in ${FOTA_CROSS_SYSROOT}: run scripts/cross-sysroot.sh as root "
                      "(scripts/install-deps.sh does), or set FOTA_CROSS_SYSROOT")
endif()

# Not CMAKE_SYSROOT: the cross compiler's C library and libstdc++ stay its own
# (/usr/aarch64-linux-gnu), the sysroot adds the libraries. find_* look in it only.
set(CMAKE_FIND_ROOT_PATH ${FOTA_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The sysroot's architecture-specific headers (openssl/opensslconf.h, libuboot.h): a multiarch
# system's compiler searches /usr/include/aarch64-linux-gnu by itself; this one has the sysroot.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES ${FOTA_CROSS_SYSROOT}/usr/include/aarch64-linux-gnu)
set(CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES ${FOTA_CROSS_SYSROOT}/usr/include/aarch64-linux-gnu)
# pkg-config: the sysroot's .pc files, their paths prefixed with it.
set(ENV{PKG_CONFIG_LIBDIR}
    ${FOTA_CROSS_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${FOTA_CROSS_SYSROOT}/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${FOTA_CROSS_SYSROOT})
set(ENV{PKG_CONFIG_PATH} "")
# The libraries' own dependencies (libssl -> libcrypto, Paho C++ -> Paho C, ...) are found by
# the linker through -rpath-link; nothing of the sysroot's path ends up in the binaries.
set(_fota_rpath_link
    "-Wl,-rpath-link,${FOTA_CROSS_SYSROOT}/usr/lib/aarch64-linux-gnu -Wl,-rpath-link,${FOTA_CROSS_SYSROOT}/lib/aarch64-linux-gnu")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${_fota_rpath_link}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${_fota_rpath_link}")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "${_fota_rpath_link}")

# ctest (and gtest_discover_tests) run the test binaries through qemu-user; the sysroot is the
# root the emulated dynamic loader looks in.
find_program(FOTA_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(FOTA_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FOTA_QEMU_AARCH64} -L ${FOTA_CROSS_SYSROOT})
endif()
