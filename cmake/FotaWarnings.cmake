# SPDX-License-Identifier: Apache-2.0
# One warnings target for every target of the project. The static libraries of the installed
# client package link it privately, so it is exported with them (fota::warnings); its options
# apply to this build only ($<BUILD_INTERFACE>), never to a program built against the package.
add_library(fota_warnings INTERFACE)
set_target_properties(fota_warnings PROPERTIES EXPORT_NAME warnings)
set(FOTA_WARNING_OPTIONS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
    -Wcast-align -Wimplicit-fallthrough)
target_compile_options(fota_warnings INTERFACE "$<BUILD_INTERFACE:${FOTA_WARNING_OPTIONS}>")
if(FOTA_WERROR)
  # GCC 12's flow-sensitive warnings at -O2 fire inside libstdc++ and date.h inlined into our code
  # (known false positives); they stay visible as warnings but do not fail the build.
  set(FOTA_WERROR_OPTIONS -Werror -Wno-error=maybe-uninitialized -Wno-error=restrict -Wno-error=array-bounds
      -Wno-error=stringop-overflow -Wno-error=stringop-overread)
  target_compile_options(fota_warnings INTERFACE "$<BUILD_INTERFACE:${FOTA_WERROR_OPTIONS}>")
endif()

if(FOTA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  # A Mosquitto started by a test must preload the ASan runtime to load an instrumented plugin.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE FOTA_ASAN_RUNTIME OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
