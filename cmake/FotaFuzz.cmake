# SPDX-License-Identifier: Apache-2.0
# FOTA_FUZZ: the libFuzzer build (fuzz/, docs/SECURITY.md "Fuzzing"). Everything is compiled with
# coverage instrumentation, AddressSanitizer and UndefinedBehaviorSanitizer; only fuzz/'s targets
# link libFuzzer's main. A build of its own (scripts/test.sh --fuzz uses build-fuzz/): clang only.
if(NOT FOTA_FUZZ)
  return()
endif()
if(FOTA_SANITIZE)
  message(FATAL_ERROR "FOTA_FUZZ already builds with ASan and UBSan; configure it without FOTA_SANITIZE")
endif()
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR
    "FOTA_FUZZ needs clang's libFuzzer, but the C++ compiler is ${CMAKE_CXX_COMPILER_ID}. Install the "
    "Debian packages clang and libclang-rt-dev (scripts/install-deps.sh does) and configure a "
    "separate build directory with CC=clang CXX=clang++, as scripts/test.sh --fuzz does.")
endif()
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
check_cxx_source_compiles([[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }
]] FOTA_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT FOTA_HAVE_LIBFUZZER)
  message(FATAL_ERROR
    "clang cannot link a libFuzzer target (-fsanitize=fuzzer): install the Debian package "
    "libclang-rt-dev (scripts/install-deps.sh does); CMakeFiles/CMakeError.log has the details.")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=undefined
                    # fota_warnings names GCC-only warnings (-Wno-error=maybe-uninitialized, ...).
                    -Wno-unknown-warning-option)
add_link_options(-fsanitize=address,undefined)
